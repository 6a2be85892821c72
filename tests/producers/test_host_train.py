"""host-train: seeds are real modules that change the network the way their stage says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tamiyo.contracts.host_schema import OP_ADVANCE, OP_CULL, OP_GERMINATE, OP_LR_DOWN, OP_WAIT
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.host_env import HostConfig
from tamiyo.producers.host_tasks import draw_task
from tamiyo.producers.host_train import make_host_train
from tamiyo.producers.seed_modules import build_seed


def _param_count(env) -> int:
    model = env.backend.model
    return sum(p.numel() for p in model.parameters()) + sum(
        p.numel() for s in model.seeds if s is not None for p in s.parameters()
    )


def _logits(env, alphas: list[float]) -> torch.Tensor:
    backend = env.backend
    with torch.no_grad():
        logits, *_ = backend.model(backend.xv, alphas, [False] * env.num_slots)
    return logits


@pytest.mark.parametrize(("in_width", "out_width"), [(64, 8), (8, 8), (20, 16)])
def test_catalog_costs_are_the_real_parameter_counts(in_width: int, out_width: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for bp in CATALOG:
        module = build_seed(bp, in_width, out_width, gen)
        assert sum(p.numel() for p in module.parameters()) == bp.param_count(in_width, out_width)
        u = torch.randn(5, in_width)
        assert torch.equal(module(u), torch.zeros(5, out_width))  # planting alone changes nothing


def test_seed_lifecycle_changes_the_real_network() -> None:
    env = make_host_train(seed=0, config=HostConfig(epoch_budget=30))
    env.reset(seed=5)
    base = _param_count(env)
    assert base == env.info()["base_params"]
    for _ in range(2):
        env.step(np.array([OP_WAIT, 0, 0]))

    env.step(np.array([OP_GERMINATE, 1, 0]))
    cost = CATALOG[0].param_count(8, 8)  # slot 1 reads hidden layer 0's output
    assert _param_count(env) == base + cost == base + env.info()["added_params"]
    seed = env.backend.model.seeds[1]
    before = [p.detach().clone() for p in seed.parameters()]
    host_before = [p.detach().clone() for p in env.backend.model.layers.parameters()]

    env.step(np.array([OP_ADVANCE, 1, 0]))  # TRAINING: the seed learns, the host output ignores it
    assert any(not torch.equal(a, b) for a, b in zip(before, seed.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(host_before, env.backend.model.layers.parameters(), strict=True))
    with_seed = _logits(env, [0.0, 0.0, 0.0])
    env.backend.model.seeds[1] = None
    assert torch.equal(with_seed, _logits(env, [0.0, 0.0, 0.0]))
    env.backend.model.seeds[1] = seed
    assert env.info()["slots"][1]["blend_gain"] != 0.0  # the probe measures what blending would do

    env.step(np.array([OP_WAIT, 0, 0]))
    env.step(np.array([OP_ADVANCE, 1, 0]))  # BLENDING: alpha > 0 and the output now depends on the seed
    alpha = env.slots[1].alpha
    assert 0.0 < alpha < 1.0
    blended = _logits(env, [0.0, alpha, 0.0])
    env.backend.model.seeds[1] = None
    assert not torch.allclose(blended, _logits(env, [0.0, alpha, 0.0]))
    env.backend.model.seeds[1] = seed

    env.step(np.array([OP_CULL, 1, 0]))  # CULL: the module is gone, parameters back to the base
    assert env.backend.model.seeds[1] is None
    assert _param_count(env) == base and env.info()["added_params"] == 0


def test_lr_actions_reach_the_optimizer() -> None:
    env = make_host_train(seed=0, config=HostConfig(epoch_budget=5))
    env.reset(seed=1)
    lr0 = env.backend.opt.param_groups[0]["lr"]
    env.step(np.array([OP_LR_DOWN, 0, 0]))
    assert env.backend.opt.param_groups[0]["lr"] == pytest.approx(lr0 / 2)


def test_training_improves_accuracy() -> None:
    env = make_host_train(seed=0, config=HostConfig(epoch_budget=10))
    env.reset(seed=2)
    initial = env.info()["val_acc"]
    for _ in range(10):
        env.step(np.array([OP_WAIT, 0, 0]))
    assert env.info()["val_acc"] > initial + 0.1


def test_task_distribution_and_held_out_split() -> None:
    names = {draw_task(np.random.default_rng(i)).name.split("-")[0] for i in range(20)}
    assert names == {"digits", "synthetic"}
    task = draw_task(np.random.default_rng(0))
    assert task.x_train.dtype == np.float32 and task.x_val.shape[1] == task.x_train.shape[1]
    assert set(np.unique(task.y_train)) == set(range(task.num_classes))
    train = make_host_train(seed=0, config=HostConfig(split="train"))
    held_out = make_host_train(seed=0, config=HostConfig(split="eval"))
    train.reset(seed=7)
    held_out.reset(seed=7)
    assert not np.array_equal(train.backend.task.x_val, held_out.backend.task.x_val)


def test_evaluate_runs_on_host_train() -> None:
    from tamiyo.producers.evaluate import evaluate

    report = evaluate("heuristic", "host-train", tasks=2, seed=0, epoch_budget=6)
    assert report["env"] == "host-train" and len(report["per_task"]) == 2
    for task in report["per_task"]:
        assert task["steps"] == 6
        gain = task["final_val_acc"] - task["initial_val_acc"] - task["rent_total"]
        assert task["return"] == pytest.approx(gain, abs=1e-9)
