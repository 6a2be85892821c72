"""The vector collector gives exactly the unrolls and episodes of the scalar `RolloutCollector` over the same
envs, seeds and policy: host-sim (episodes terminate) and CartPole cut short (episodes are truncated)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tamiyo.contracts.unroll import Unroll
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.producers.envs import make_env
from tamiyo.producers.rollout import RolloutCollector
from tamiyo.producers.vec_env import SyncVecEnv
from tamiyo.producers.vec_rollout import VecRolloutCollector


def assert_same_unrolls(got: list[Unroll], want: list[Unroll]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.graphs.equals(b.graphs)
        for name in ("actions", "action_masks", "behaviour_log_probs", "rewards", "terminated", "truncated",
                     "policy_versions", "episode_returns"):  # fmt: skip
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), name
        assert (a.final_graphs is None) == (b.final_graphs is None)
        if a.final_graphs is not None and b.final_graphs is not None:
            assert a.final_graphs.equals(b.final_graphs)
        assert (a.sequence, a.actor_id, a.env_id) == (b.sequence, b.actor_id, b.env_id)


def _envs(name: str, n: int, **kw):
    return [make_env(name, seed=100 + i, **kw) for i in range(n)]


@pytest.mark.parametrize(
    ("name", "kw", "steps"), [("host-sim", {}, 12), ("gym:CartPole-v1", {"max_episode_steps": 7}, 5)]
)
def test_vector_collector_equals_the_scalar_one(name, kw, steps):
    schema = make_env(name, **kw).schema
    torch.manual_seed(0)
    model = TamiyoGNN(schema, ModelConfig(hidden=16, layers=("sage",)))
    results = []
    for vector in (False, True):
        torch.manual_seed(7)  # the same sampling draws for both
        policy = ModelPolicy(model, version=3)
        envs = _envs(name, 4, **kw)
        collector = (
            VecRolloutCollector(SyncVecEnv(envs), policy, steps, seed=5, actor_id="a", env_id=name)
            if vector
            else RolloutCollector(envs, policy, steps, seed=5, actor_id="a", env_id=name)
        )
        unrolls = [u for _ in range(4) for u in collector.collect()]
        results.append((unrolls, collector.episodes, collector.env_steps))
    (want, want_eps, want_steps), (got, got_eps, got_steps) = results
    assert_same_unrolls(got, want)
    assert got_eps == want_eps and got_steps == want_steps
    assert got_eps, "the test should see episodes end"
    if name.startswith("gym"):
        assert any(u.truncated.any() for u in want), "and truncations"
