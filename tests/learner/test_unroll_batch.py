import numpy as np
import pytest
import torch

from tamiyo.contracts.host_schema import host_schema
from tamiyo.contracts.random_unrolls import random_unroll
from tamiyo.learner.unroll_batch import batch_unrolls

SCHEMA = host_schema(3, 3)


def graph_key(p, i):
    """A hashable fingerprint of graph i of p (its global node features)."""
    return p.select(np.array([i])).node_features["global"].tobytes()


def make(n=4, t=7, seed=0):
    rng = np.random.default_rng(seed)
    return [random_unroll(SCHEMA, t, rng, p_terminated=0.15, p_truncated=0.25) for _ in range(n)]


def test_layout_is_time_major_with_bootstrap_and_finals():
    unrolls = make()
    batch = batch_unrolls(unrolls, schema=SCHEMA)
    t, b = 7, 4
    assert batch.graphs.num_graphs == t * b + b + batch.num_finals
    assert batch.num_finals == sum(int(u.truncated.sum()) for u in unrolls) > 0
    for ti in range(t):
        for bi in range(b):
            assert graph_key(batch.graphs, ti * b + bi) == graph_key(unrolls[bi].graphs, ti)
            assert batch.rewards[ti, bi] == float(unrolls[bi].rewards[ti])
            assert batch.actions[ti, bi].tolist() == unrolls[bi].actions[ti].tolist()
    for bi in range(b):
        assert graph_key(batch.graphs, t * b + bi) == graph_key(unrolls[bi].graphs, t)
    # Every final graph sits at the (t, b) of its truncated step.
    seen = {bi: 0 for bi in range(b)}
    for k in range(batch.num_finals):
        ti, bi = int(batch.final_t[k]), int(batch.final_b[k])
        assert unrolls[bi].truncated[ti]
        assert graph_key(batch.graphs, t * b + b + k) == graph_key(unrolls[bi].final_graphs, seen[bi])
        seen[bi] += 1


def test_truncation_bootstraps_from_final_value_and_cuts_discount():
    unrolls = make(seed=1)
    batch = batch_unrolls(unrolls)
    gamma = 0.9
    final_values = torch.arange(1.0, batch.num_finals + 1)
    rewards, discounts = batch.targets_inputs(final_values, gamma)
    expected = batch.rewards.clone()
    for k in range(batch.num_finals):
        expected[batch.final_t[k], batch.final_b[k]] += gamma * final_values[k]
    torch.testing.assert_close(rewards, expected)
    ended = batch.terminated | batch.truncated
    assert (discounts[ended] == 0).all() and (discounts[~ended] == gamma).all()
    values, boot, finals = batch.split_values(torch.arange(float(batch.graphs.num_graphs)))
    assert values.shape == (7, 4) and boot.tolist() == [28.0, 29.0, 30.0, 31.0]
    assert finals.shape == (batch.num_finals,)


def test_rejects_mixed_lengths():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        batch_unrolls([random_unroll(SCHEMA, 5, rng), random_unroll(SCHEMA, 6, rng)])
