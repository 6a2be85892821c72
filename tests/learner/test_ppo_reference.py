"""PPO's pieces against hand-computed answers (not re-computations through the same code): the clipped
surrogate and its gradient, the value clip, the k3 KL estimate, the entropy and log-prob of the
masked factored distribution; and decoupled PPO on stale data (issue 14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tamiyo.contracts.host_schema import host_schema
from tamiyo.contracts.random_unrolls import random_unroll
from tamiyo.learner.core import skip_reason
from tamiyo.learner.ppo import PPOConfig, PPOLearner, clipped_surrogate, k3_kl, value_loss
from tamiyo.policy.batching import collate
from tamiyo.policy.distribution import MaskedFactoredCategorical
from tamiyo.policy.model import ModelConfig, TamiyoGNN

LN2 = math.log(2)


def test_clipped_surrogate_takes_the_pessimistic_branch_and_stops_the_gradient_where_clipped():
    # ε = 0.2.  Per sample: max(-A·r, -A·clip(r, 0.8, 1.2)):
    #   r=0.5, A=+1: max(-0.5, -0.8) = -0.5 (unclipped, d/dr = -1)
    #   r=1.0, A=-1: max( 1.0,  1.0) =  1.0 (inside the range, d/dr = +1)
    #   r=1.5, A=+1: max(-1.5, -1.2) = -1.2 (clipped: no gradient)
    #   r=1.5, A=-1: max( 1.5,  1.2) =  1.5 (a worse ratio is never clipped away, d/dr = +1)
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.5], requires_grad=True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss = clipped_surrogate(ratio, adv, torch.ones(4), 0.2)
    assert float(loss.detach()) == pytest.approx((-0.5 + 1.0 - 1.2 + 1.5) / 4)
    loss.backward()
    assert ratio.grad.tolist() == pytest.approx([-0.25, 0.25, 0.0, 0.25])
    # The behaviour weights scale each sample's term: [1, 0.5, 1, 0] -> (-0.5 + 0.5 - 1.2 + 0) / 4.
    weighted = clipped_surrogate(ratio.detach(), adv, torch.tensor([1.0, 0.5, 1.0, 0.0]), 0.2)
    assert float(weighted) == pytest.approx(-0.3)


def test_value_clip_is_the_pessimistic_max_of_the_two_errors():
    old, new = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])
    returns = torch.tensor([2.0, 0.5])
    # Sample 1: unclipped (1-2)² = 1, clipped value 0.2: (0.2-2)² = 3.24 -> 3.24.
    # Sample 2: unclipped (1-0.5)² = 0.25, clipped (0.2-0.5)² = 0.09 -> 0.25.
    assert float(value_loss(new, old, returns, 0.2)) == pytest.approx(0.5 * (3.24 + 0.25) / 2)
    assert float(value_loss(new, old, returns, None)) == pytest.approx(0.5 * (1.0 + 0.25) / 2)


def test_k3_kl_is_the_exact_kl_when_averaged_over_the_sampling_distribution():
    # q = [0.5, 0.5], p = [0.9, 0.1]: KL(q||p) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5108256.
    logratio = torch.tensor([math.log(0.9 / 0.5), math.log(0.1 / 0.5)])  # one sample of each outcome
    assert k3_kl(logratio) == pytest.approx(0.5108256, abs=1e-6)
    assert k3_kl(torch.zeros(5)) == 0.0


def test_masked_factored_entropy_and_log_prob_on_a_hand_built_mask():
    # Two heads of 2; the joint mask forbids (1, 1).  Uniform logits.
    mask = torch.tensor([[True, True, True, False]] * 3)
    logits = [torch.zeros(3, 2), torch.zeros(3, 2)]
    dist = MaskedFactoredCategorical(logits, mask)
    log_prob, entropy = dist.evaluate(torch.tensor([[0, 1], [1, 0], [0, 0]]))
    # Head 1: both allowed (ln 2).  Head 2 after 0: both (ln 2); after 1: only 0 (entropy 0).
    assert log_prob.tolist() == pytest.approx([-2 * LN2, -LN2, -2 * LN2])
    assert entropy.tolist() == pytest.approx([2 * LN2, LN2, 2 * LN2])
    # Averaged over head 1's own distribution, it is the joint entropy of {(0,0): .25, (0,1): .25, (1,0): .5}.
    joint = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert 0.5 * float(entropy[0]) + 0.5 * float(entropy[1]) == pytest.approx(joint)
    # Skewed head 1 (p = [0.75, 0.25]), the taken branch without a choice left on head 2.
    skewed = MaskedFactoredCategorical([torch.tensor([[math.log(3.0), 0.0]]), torch.zeros(1, 2)], mask[:1])
    lp, ent = skewed.evaluate(torch.tensor([[1, 0]]))
    assert float(lp) == pytest.approx(math.log(0.25))
    assert float(ent) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


SCHEMA = host_schema(3, 3)


def _stale_batch(model: TamiyoGNN, lag_nats: float, n: int = 8, t: int = 8) -> list:
    """Unrolls whose behaviour log-probs are the model's own minus ``lag_nats`` (a lagging actor)."""
    rng = np.random.default_rng(0)
    data = [random_unroll(SCHEMA, t, rng) for _ in range(n)]
    for u in data:
        with torch.no_grad():
            out = model(collate(u.graphs.select(np.arange(u.length))))
            own = MaskedFactoredCategorical(out.logits, torch.from_numpy(u.action_masks))
            logp = own.log_prob(torch.from_numpy(u.actions)).numpy()
        u.behaviour_log_probs = (logp - lag_nats).astype(np.float32)
    return data


def test_decoupled_ppo_steps_on_stale_data_and_truncates_the_behaviour_weight():
    """Plain PPO measured the KL against the behaviour policy: on data from a lagging actor its early
    stop fired before any step.  Decoupled PPO centres the trust region on the pre-update policy."""
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, ModelConfig(hidden=16))
    learner = PPOLearner(model, PPOConfig(minibatch_size=16, update_epochs=2, target_kl=0.01))
    metrics = learner.update(_stale_batch(model, lag_nats=1.0))  # KL(behaviour || current) ~ e - 2 ≈ 0.72
    assert metrics["skipped"] == 0.0 and metrics["optimizer_steps"] >= 1 and learner.version == 1
    assert metrics["is_weight_mean"] == pytest.approx(math.e, rel=1e-4)
    assert metrics["is_weight_truncated_fraction"] == 1.0
    assert metrics["behaviour_kl"] == pytest.approx(math.e - 2, rel=1e-3)
    # The KL the early stop watches starts at 0: the first minibatch is the proximal policy itself.
    assert metrics["approx_kl"] < 0.01


def test_on_fresh_data_decoupled_ppo_is_plain_ppo():
    """Behaviour = proximal: every weight is 1 and the ratio is new/behaviour, PPO's own objective."""
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, ModelConfig(hidden=16))
    learner = PPOLearner(model, PPOConfig(minibatch_size=64, update_epochs=1, target_kl=None))
    metrics = learner.update(_stale_batch(model, lag_nats=0.0))
    assert metrics["is_weight_mean"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["is_weight_truncated_fraction"] == 0.0 and metrics["behaviour_kl"] == pytest.approx(0, abs=1e-6)


def test_skip_reasons_say_what_happened():
    assert skip_reason({"skipped": 0.0, "optimizer_steps": 4.0}) == ""
    assert skip_reason({"skipped": 1.0, "breaker_open": 1.0}) == "circuit breaker open"
    assert skip_reason({"skipped": 1.0, "skipped_steps": 1.0, "breaker_open": 0.0}) == "non-finite loss or gradients"
    assert skip_reason({"skipped": 1.0, "early_stopped": 1.0, "skipped_steps": 0.0}) == (
        "KL early stop before the first step"
    )
    assert skip_reason({"skipped": 1.0, "breaker_open": 0.0}) == "non-finite loss or gradients"  # IMPALA's refusal
