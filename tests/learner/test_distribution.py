import itertools

import numpy as np
import pytest
import torch

from tamiyo.policy.distribution import AllMaskedError, MaskedFactoredCategorical, TakenActionMaskedError

SIZES = (3, 4, 2)


def random_case(n: int, seed: int = 0, p: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(n, s, generator=g) * 2 for s in SIZES]
    joint = torch.rand(n, int(np.prod(SIZES)), generator=g) < p
    joint[:, -1] = True  # every row allows at least one joint action
    return logits, joint


def test_conditional_masks_follow_the_joint_mask():
    joint = torch.zeros(1, *SIZES, dtype=torch.bool)
    joint[0, 1, 2, 0] = True
    joint[0, 1, 3, 1] = True
    joint[0, 2, 0, 1] = True
    dist = MaskedFactoredCategorical([torch.zeros(1, s) for s in SIZES], joint.reshape(1, -1))
    m0, m1, m2 = dist.head_masks(torch.tensor([[1, 3, 1]]))
    assert m0.tolist() == [[False, True, True]]
    assert m1.tolist() == [[False, False, True, True]]  # given op 1: slots 2 and 3
    assert m2.tolist() == [[False, True]]  # given (1, 3): only blueprint 1


def test_samples_are_always_allowed_and_probabilities_sum_to_one():
    logits, joint = random_case(64)
    dist = MaskedFactoredCategorical(logits, joint)
    for _ in range(20):
        actions, log_prob, _ = dist.sample()
        flat = np.ravel_multi_index(tuple(actions.T.numpy()), SIZES)
        assert joint[torch.arange(64), torch.from_numpy(flat)].all()
        torch.testing.assert_close(log_prob, dist.log_prob(actions))
    # Brute force over every joint action: allowed ones sum to probability 1.
    all_actions = torch.tensor(list(itertools.product(*[range(s) for s in SIZES])))
    for row in range(8):
        one = MaskedFactoredCategorical([lg[row : row + 1] for lg in logits], joint[row : row + 1])
        total = 0.0
        for k, a in enumerate(all_actions):
            if joint[row, k]:
                total += float(one.log_prob(a.unsqueeze(0)).exp())
            else:
                with pytest.raises(TakenActionMaskedError):
                    one.log_prob(a.unsqueeze(0))
        assert abs(total - 1.0) < 1e-5


def test_masked_logits_get_exactly_zero_probability_even_when_huge():
    logits = [torch.tensor([[1e4, 0.0, -3.0]]), torch.tensor([[5e3, 1.0]])]
    joint = torch.tensor([[False, False, True, True, False, True]])  # (0,*) forbidden, (1,0) allowed
    dist = MaskedFactoredCategorical(logits, joint)
    for _ in range(200):
        a, lp, _ = dist.sample()
        assert a[0, 0].item() != 0 and torch.isfinite(lp).all()
    _, logp0 = dist._head(0, dist.joint)
    assert logp0.exp()[0, 0].item() == 0.0


def test_entropy_is_sum_of_conditional_entropies():
    logits, joint = random_case(16, seed=1)
    dist = MaskedFactoredCategorical(logits, joint)
    actions, _, ent_sampled = dist.sample()
    _, ent = dist.evaluate(actions)
    torch.testing.assert_close(ent, ent_sampled)
    masks = dist.head_masks(actions)
    expected = torch.zeros(16)
    for j, (lg, m) in enumerate(zip(logits, masks, strict=True)):
        for i in range(16):
            p = torch.softmax(lg[i][m[i]], -1)
            expected[i] += -(p * p.log()).sum()
        assert m.any(-1).all(), j
    torch.testing.assert_close(ent, expected)


def test_sampling_frequencies_match_probabilities():
    torch.manual_seed(0)
    logits = [torch.tensor([[0.3, -0.2, 1.0]]), torch.tensor([[0.5, 0.0]])]
    joint = torch.tensor([[True, True, False, True, True, True]])
    n = 20000
    dist = MaskedFactoredCategorical([lg.expand(n, -1) for lg in logits], joint.expand(n, -1))
    actions, _, _ = dist.sample()
    flat = np.ravel_multi_index(tuple(actions.T.numpy()), (3, 2))
    freq = np.bincount(flat, minlength=6) / n
    one = MaskedFactoredCategorical(logits, joint)
    for k in range(6):
        a = torch.tensor([np.unravel_index(k, (3, 2))])
        p = float(one.log_prob(a).exp()) if joint[0, k] else 0.0
        assert abs(freq[k] - p) < 0.015, (k, freq[k], p)
    assert freq[2] == 0.0


def test_all_masked_head_raises_not_nan():
    logits = [torch.zeros(2, s) for s in SIZES]
    joint = torch.ones(2, int(np.prod(SIZES)), dtype=torch.bool)
    joint[1] = False
    with pytest.raises(AllMaskedError, match=r"head .0. has no allowed choice"):
        MaskedFactoredCategorical(logits, joint).sample()
    with pytest.raises(AllMaskedError):
        MaskedFactoredCategorical(logits, joint).evaluate(torch.zeros(2, 3, dtype=torch.long))


def test_gradients_are_finite_with_masks():
    logits, joint = random_case(32, seed=2)
    logits = [lg.requires_grad_(True) for lg in logits]
    dist = MaskedFactoredCategorical(logits, joint)
    actions, _, _ = dist.sample()
    log_prob, entropy = dist.evaluate(actions)
    (log_prob.sum() + entropy.sum()).backward()
    for lg in logits:
        assert torch.isfinite(lg.grad).all()
    # A masked choice receives no gradient at all.
    m0 = dist.head_masks(actions)[0]
    assert (logits[0].grad[~m0] == 0).all()


def test_deterministic_sampling_picks_the_best_allowed_choice():
    logits = [torch.tensor([[5.0, 1.0, 0.0]])]
    joint = torch.tensor([[False, True, True]])
    actions, _, _ = MaskedFactoredCategorical(logits, joint).sample(deterministic=True)
    assert actions.tolist() == [[1]]
