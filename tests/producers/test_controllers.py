"""Baseline controllers: protocol, valid actions, their characteristic behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from tamiyo.contracts.host_schema import NUM_OPS, OP_CULL, OP_GERMINATE, OP_WAIT
from tamiyo.producers.controllers import (
    HeuristicController,
    NoneController,
    RandomController,
    make_controller,
)
from tamiyo.producers.envs import make_env
from tamiyo.producers.host_env import HostEnv
from tamiyo.producers.lifecycle import Stage


def _episode(env: HostEnv, name: str, task: int) -> list[np.ndarray]:
    ctrl = make_controller(name, seed=task)
    ctrl.reset(task)
    obs = env.reset(seed=task)
    actions, done = [], False
    while not done:
        action = ctrl.act(obs, env.info())
        assert action.shape == (3,)
        joint = np.ravel_multi_index(tuple(action), (NUM_OPS, env.num_slots, env.num_blueprints))
        assert obs.action_mask[joint], f"{name} chose a masked action {action}"
        actions.append(action)
        result = env.step(action)
        obs, done = result.observation, result.terminated
    return actions


@pytest.mark.parametrize("name", ["none", "random", "heuristic", "tuned"])
def test_controllers_only_choose_allowed_actions(name: str) -> None:
    env = make_env("host-sim", seed=0)
    assert isinstance(env, HostEnv)
    for task in range(15):
        _episode(env, name, task)


def test_none_always_waits() -> None:
    env = make_env("host-sim", seed=0)
    assert isinstance(env, HostEnv)
    assert all(a[0] == OP_WAIT for a in _episode(env, "none", 0))


def test_random_is_uniform_over_valid_joint_actions() -> None:
    env = make_env("host-sim", seed=0)
    assert isinstance(env, HostEnv)
    obs = env.reset(seed=0)
    ctrl = RandomController(seed=0)
    counts: dict[tuple[int, ...], int] = {}
    n = 6000
    for _ in range(n):
        a = tuple(int(x) for x in ctrl.act(obs, env.info()))
        counts[a] = counts.get(a, 0) + 1
    valid = int(obs.action_mask.sum())
    assert len(counts) == valid
    expected = n / valid
    assert all(abs(c - expected) < 5 * np.sqrt(expected) for c in counts.values())


def test_heuristic_germinates_on_plateau_and_culls_on_regression() -> None:
    env = make_env("host-sim", seed=0)
    assert isinstance(env, HostEnv)
    ctrl = HeuristicController(plateau_epochs=2)
    obs = env.reset(seed=0)
    info = env.info()
    assert ctrl.act(obs, {**info, "plateau": 0})[0] == OP_WAIT
    a = ctrl.act(obs, {**info, "plateau": 2})
    assert a[0] == OP_GERMINATE and a[2] == info["blueprint_ids"].index("residual_mlp")
    # A blending seed whose accuracy fell since germination gets culled.
    env.step(a)
    env.step(np.array([2, a[1], 0]))
    obs = env.step(np.array([2, a[1], 0])).observation
    assert env.slots[int(a[1])].stage == Stage.BLENDING
    info = env.info()
    info["slots"][int(a[1])]["acc_delta"] = -0.1
    assert list(ctrl.act(obs, info)) == [OP_CULL, a[1], 0]


def test_unknown_controller_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown controller"):
        make_controller("oracle-of-delphi")
    assert isinstance(make_controller("none"), NoneController)


@pytest.mark.parametrize("order", ["largest", "smallest"])
def test_tuned_germinates_the_largest_or_the_cheapest_affordable_blueprint(order: str) -> None:
    from tamiyo.producers.controllers import TunedController

    env = make_env("host-sim", seed=0)
    assert isinstance(env, HostEnv)
    ctrl = TunedController(blueprint=order)
    germinated = 0
    for task in range(6):
        obs, done = env.reset(seed=task), False
        ctrl.reset(task)
        while not done:
            info = env.info()
            action = ctrl.act(obs, info)
            if action[0] == OP_GERMINATE:
                germinated += 1
                mask = obs.action_mask.reshape(NUM_OPS, env.num_slots, env.num_blueprints)
                costs = info["blueprint_costs"][0]
                allowed = [b for b in range(env.num_blueprints) if mask[OP_GERMINATE, action[1], b]]
                pick = max if order == "largest" else min
                assert costs[action[2]] == pick(costs[b] for b in allowed)
            result = env.step(action)
            obs, done = result.observation, result.terminated
    assert germinated > 0
    with pytest.raises(ValueError, match="blueprint must be"):
        TunedController(blueprint="medium")
