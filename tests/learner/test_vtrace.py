import math

import pytest
import torch

from tamiyo.learner.vtrace import vtrace

CLIPS = (1.0, 0.8, 1.5)  # rho_bar, c_bar, pg_rho_bar: all different so a mix-up shows


def naive_vtrace(log_rhos, rewards, discounts, values, bootstrap, rho_bar, c_bar, pg_bar):
    """Ground truth straight from the paper's sum (eq. 1), one scalar at a time:
    vs_t = V_t + sum_{s>=t} (prod_{i=t}^{s-1} gamma_i c_i) rho_s delta_s."""
    t_len, b = rewards.shape
    vs = [[0.0] * b for _ in range(t_len)]
    pg = [[0.0] * b for _ in range(t_len)]
    for j in range(b):
        v = [float(values[t, j]) for t in range(t_len)] + [float(bootstrap[j])]
        rho = [math.exp(float(log_rhos[t, j])) for t in range(t_len)]
        for t in range(t_len):
            total = 0.0
            for s in range(t, t_len):
                weight = 1.0
                for i in range(t, s):
                    weight *= float(discounts[i, j]) * min(c_bar, rho[i])
                delta = min(rho_bar, rho[s]) * (float(rewards[s, j]) + float(discounts[s, j]) * v[s + 1] - v[s])
                total += weight * delta
            vs[t][j] = v[t] + total
        for t in range(t_len):
            vs_next = vs[t + 1][j] if t + 1 < t_len else v[t_len]
            pg[t][j] = min(pg_bar, rho[t]) * (float(rewards[t, j]) + float(discounts[t, j]) * vs_next - v[t])
    return torch.tensor(vs, dtype=torch.float64), torch.tensor(pg, dtype=torch.float64)


def make_case(discount_pattern: str, seed: int = 0, t_len: int = 9, b: int = 6):
    g = torch.Generator().manual_seed(seed)
    # log-ratios in [-2.5, 2.5]: rho from 0.08 to 12, i.e. well below and above every threshold.
    log_rhos = (torch.rand(t_len, b, generator=g) * 5.0 - 2.5).double()
    behaviour = torch.randn(t_len, b, generator=g).double() - 1.0
    target = behaviour + log_rhos
    rewards = torch.randn(t_len, b, generator=g).double()
    values = torch.randn(t_len, b, generator=g).double()
    bootstrap = torch.randn(b, generator=g).double()
    gamma = 0.95
    discounts = torch.full((t_len, b), gamma, dtype=torch.float64)
    if discount_pattern == "mid_termination":
        discounts[3, 0] = 0.0
        discounts[t_len // 2, 2] = 0.0
        discounts[0, 3] = 0.0
    elif discount_pattern == "last_step_terminal":
        discounts[-1, :] = 0.0
    elif discount_pattern == "random":
        discounts = gamma * (torch.rand(t_len, b, generator=g) > 0.3).double()
    elif discount_pattern == "mixed_gamma":
        discounts = torch.rand(t_len, b, generator=g).double()
    return behaviour, target, rewards, discounts, values, bootstrap


@pytest.mark.parametrize("pattern", ["constant", "mid_termination", "last_step_terminal", "random", "mixed_gamma"])
def test_vtrace_matches_naive_sum(pattern):
    behaviour, target, rewards, discounts, values, bootstrap = make_case(pattern)
    rho = (target - behaviour).exp()
    assert (rho < 0.5).any() and (rho > 2.0).any()  # the spread the test relies on
    out = vtrace(behaviour, target, rewards, discounts, values, bootstrap, *CLIPS)
    ref_vs, ref_pg = naive_vtrace(target - behaviour, rewards, discounts, values, bootstrap, *CLIPS)
    torch.testing.assert_close(out.vs, ref_vs, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out.pg_advantages, ref_pg, atol=1e-9, rtol=1e-9)


def test_vtrace_default_thresholds_and_no_clipping():
    behaviour, target, rewards, discounts, values, bootstrap = make_case("random", seed=3)
    out = vtrace(behaviour, target, rewards, discounts, values, bootstrap)
    ref_vs, ref_pg = naive_vtrace(target - behaviour, rewards, discounts, values, bootstrap, 1.0, 1.0, 1.0)
    torch.testing.assert_close(out.vs, ref_vs)
    torch.testing.assert_close(out.pg_advantages, ref_pg)
    out = vtrace(behaviour, target, rewards, discounts, values, bootstrap, None, None, None)
    inf = float("inf")
    ref_vs, ref_pg = naive_vtrace(target - behaviour, rewards, discounts, values, bootstrap, inf, inf, inf)
    torch.testing.assert_close(out.vs, ref_vs)
    torch.testing.assert_close(out.pg_advantages, ref_pg)


@pytest.mark.parametrize("pattern", ["constant", "mid_termination", "random"])
def test_on_policy_vtrace_is_lambda_one_return(pattern):
    behaviour, _, rewards, discounts, values, bootstrap = make_case(pattern, seed=7)
    out = vtrace(behaviour, behaviour.clone(), rewards, discounts, values, bootstrap)
    # On-policy (rho = c = 1) vs_t is the n-step discounted return bootstrapped at the end.
    t_len, b = rewards.shape
    expected = torch.empty(t_len, b, dtype=torch.float64)
    acc = bootstrap.clone()
    for t in reversed(range(t_len)):
        acc = rewards[t] + discounts[t] * acc
        expected[t] = acc
    torch.testing.assert_close(out.vs, expected)
    vs_next = torch.cat([expected[1:], bootstrap.unsqueeze(0)])
    torch.testing.assert_close(out.pg_advantages, rewards + discounts * vs_next - values)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("pattern", ["constant", "mid_termination", "mixed_gamma"])
def test_on_policy_vtrace_with_lambda_is_the_td_lambda_return(pattern, lam):
    """Ground truth from the forward view, as a weighted sum of n-step returns:
    G^lambda_t = (1 - lambda) sum_{n=1}^{T-t-1} lambda^(n-1) G^(n)_t + lambda^(T-t-1) G^(T-t)_t,
    where G^(n)_t bootstraps from V_{t+n} (V_T: the bootstrap value)."""
    behaviour, _, rewards, discounts, values, bootstrap = make_case(pattern, seed=5)
    out = vtrace(behaviour, behaviour.clone(), rewards, discounts, values, bootstrap, lambda_=lam)
    t_len, b = rewards.shape
    v = torch.cat([values, bootstrap.unsqueeze(0)])
    expected = torch.empty(t_len, b, dtype=torch.float64)

    def n_step(t: int, j: int, n: int) -> float:
        total, scale = 0.0, 1.0
        for k in range(t, t + n):
            total += scale * float(rewards[k, j])
            scale *= float(discounts[k, j])
        return total + scale * float(v[t + n, j])

    for j in range(b):
        for t in range(t_len):
            last = t_len - t
            weighted = sum((1 - lam) * lam ** (n - 1) * n_step(t, j, n) for n in range(1, last))
            expected[t, j] = weighted + lam ** (last - 1) * n_step(t, j, last)
    torch.testing.assert_close(out.vs, expected, atol=1e-9, rtol=1e-9)
    vs_next = torch.cat([expected[1:], bootstrap.unsqueeze(0)])
    torch.testing.assert_close(out.pg_advantages, rewards + discounts * vs_next - values)
    with pytest.raises(ValueError):
        vtrace(behaviour, behaviour, rewards, discounts, values, bootstrap, lambda_=1.5)


def test_vtrace_has_no_gradient():
    behaviour, target, rewards, discounts, values, bootstrap = make_case("constant")
    values = values.clone().requires_grad_(True)
    target = target.clone().requires_grad_(True)
    out = vtrace(behaviour, target, rewards, discounts, values, bootstrap)
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad
