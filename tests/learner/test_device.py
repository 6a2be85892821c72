"""The learner runs on any torch device; CUDA cases run only where a GPU is present."""

import numpy as np
import pytest
import torch

from tamiyo.contracts.host_schema import host_schema
from tamiyo.contracts.random_unrolls import random_graphs, random_joint_masks, random_unroll
from tamiyo.learner.impala import ImpalaConfig, ImpalaLearner
from tamiyo.learner.ppo import PPOConfig, PPOLearner
from tamiyo.policy.batching import collate
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.policy.snapshot import encode_snapshot, network_from_snapshot

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]
SCHEMA = host_schema(3, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_policy_and_learners_on_device(device):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, ModelConfig(hidden=16)).to(device)
    graphs = random_graphs(SCHEMA, 5, rng)
    masks = random_joint_masks(SCHEMA, 5, rng)
    step = ModelPolicy(model, version=3, device=device)(graphs, masks)
    flat = np.ravel_multi_index(tuple(step.actions.T), SCHEMA.head_sizes)
    assert masks[np.arange(5), flat].all() and step.version == 3
    unrolls = [random_unroll(SCHEMA, 6, rng) for _ in range(4)]
    ppo = PPOLearner(model, PPOConfig(minibatch_size=8, target_kl=None), device=device).update(unrolls)
    assert ppo["optimizer_steps"] == 12
    result = ImpalaLearner(model, ImpalaConfig(), device=device).step(unrolls)
    assert result.metrics["skipped"] == 0.0 and np.isfinite(result.priorities).all()


@pytest.mark.parametrize("device", DEVICES)
def test_snapshot_loads_onto_device(device):
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA)
    snap = encode_snapshot(model, 1)
    loaded, _ = network_from_snapshot(snap.weights, snap.config_json, device=device)
    graphs = random_graphs(SCHEMA, 8, np.random.default_rng(1))
    ref = model(collate(graphs)).value
    got = loaded(collate(graphs, device)).value.cpu()
    if device == "cpu":
        assert torch.equal(ref, got)
    else:
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
