import torch

from tamiyo.learner.gae import gae


def naive_gae(rewards, values, bootstrap, discounts, lam):
    """Double loop: A_t = sum_k (prod_{i<k} discount_{t+i} * lam) * delta_{t+k}."""
    t_len, b = rewards.shape
    adv = torch.zeros(t_len, b, dtype=torch.float64)
    for j in range(b):
        v = [float(values[t, j]) for t in range(t_len)] + [float(bootstrap[j])]
        for t in range(t_len):
            total, weight = 0.0, 1.0
            for k in range(t, t_len):
                delta = float(rewards[k, j]) + float(discounts[k, j]) * v[k + 1] - v[k]
                total += weight * delta
                weight *= float(discounts[k, j]) * lam
            adv[t, j] = total
    return adv, adv + values.double()


def test_gae_matches_double_loop_with_terminations():
    g = torch.Generator().manual_seed(0)
    t_len, b, gamma = 13, 5, 0.97
    rewards = torch.randn(t_len, b, generator=g)
    values = torch.randn(t_len, b, generator=g)
    bootstrap = torch.randn(b, generator=g)
    terminated = torch.rand(t_len, b, generator=g) < 0.2
    terminated[6, 0] = True  # mid-unroll episode end
    terminated[-1, 1] = True  # last step ends: bootstrap must be ignored
    discounts = gamma * (~terminated).float()
    for lam in (0.0, 0.95, 1.0):
        adv, ret = gae(rewards, values, bootstrap, discounts, lam)
        ref_adv, ref_ret = naive_gae(rewards, values, bootstrap, discounts, lam)
        torch.testing.assert_close(adv.double(), ref_adv, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ret.double(), ref_ret, atol=1e-5, rtol=1e-5)


def test_gae_lambda_one_is_discounted_return_minus_value():
    t_len, gamma = 6, 0.9
    rewards = torch.arange(1.0, t_len + 1).unsqueeze(1)
    values = torch.full((t_len, 1), 0.5)
    bootstrap = torch.tensor([2.0])
    discounts = torch.full((t_len, 1), gamma)
    _, ret = gae(rewards, values, bootstrap, discounts, 1.0)
    expected = sum(gamma**k * float(rewards[k]) for k in range(t_len)) + gamma**t_len * 2.0
    assert abs(float(ret[0, 0]) - expected) < 1e-4
