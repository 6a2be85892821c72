"""tamiyo/HostSim-v0 and tamiyo/HostTrain-v0: gymnasium's checker, the spaces, the native env's data
through the Dict observation, invalid actions, the flattened wrapper and Stable-Baselines3 on it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tamiyo  # noqa: F401  (registers the ids)
from tamiyo.contracts.host_schema import NUM_OPS, OP_CULL, OP_GERMINATE, OP_WAIT, unravel_action
from tamiyo.producers.envs import make_env
from tamiyo.producers.flatten_graph_observation import FlattenGraphObservation
from tamiyo.producers.graph_spaces import ACTION_MASK, edge_key, node_key
from tamiyo.producers.gymnasium_envs import HostGymEnv
from tamiyo.producers.host_env import HostEnv

# (gymnasium id, native name, kwargs): host-train's episodes are short, each step is a real epoch.
ENVS = [("tamiyo/HostSim-v0", "host-sim", {}), ("tamiyo/HostTrain-v0", "host-train", {"epoch_budget": 3})]
IDS = ["host-sim", "host-train"]


def _host(env: gym.Env[Any, Any]) -> HostGymEnv:
    inner = env.unwrapped
    assert isinstance(inner, HostGymEnv)
    return inner


def _native(name: str, seed: int, **kw: Any) -> HostEnv:
    env = make_env(name, seed=seed, **kw)
    assert isinstance(env, HostEnv)
    return env


def _random_allowed(native: HostEnv, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    index = int(rng.choice(np.flatnonzero(mask)))
    return unravel_action(index, native.num_slots, native.num_blueprints)


@pytest.mark.filterwarnings("error::UserWarning")  # gymnasium's checker warns for what it does not fail
@pytest.mark.parametrize(("env_id", "name", "kw"), ENVS, ids=IDS)
def test_check_env_passes(env_id: str, name: str, kw: dict[str, Any]) -> None:
    env = gym.make(env_id, **kw)
    assert (
        env.spec is not None
        and env.spec.entry_point == f"tamiyo.producers.gymnasium_envs:{type(env.unwrapped).__name__}"
    )
    check_env(env.unwrapped)  # the raw env, as the checker asks; it re-makes it from the spec


@pytest.mark.parametrize(("env_id", "name", "kw"), ENVS, ids=IDS)
def test_spaces_follow_the_schema(env_id: str, name: str, kw: dict[str, Any]) -> None:
    host = _host(gym.make(env_id, **kw))
    schema = host.native.schema
    assert isinstance(host.action_space, gym.spaces.MultiDiscrete)
    assert host.action_space.nvec.tolist() == list(schema.head_sizes) == [NUM_OPS, 3, 3]
    space = host.observation_space
    assert isinstance(space, gym.spaces.Dict)
    graph = host.native.reset(seed=0).graph
    for nt in schema.node_types:  # the host graphs' node counts are fixed: no padding rows
        assert space[node_key(nt.name)].shape == (int(graph.node_counts[nt.name][0]), nt.num_features)
    for rel in schema.relations:
        assert space[edge_key(rel)].shape == (2, host.layout.max_edges[rel.key])
    assert space[ACTION_MASK].shape == (schema.joint_action_count,)


@pytest.mark.parametrize(
    ("env_id", "name", "kw", "episodes"), [(*e, n) for e, n in zip(ENVS, (3, 1), strict=True)], ids=IDS
)
def test_dict_observation_round_trips_the_native_env(env_id: str, name: str, kw: dict[str, Any], episodes: int) -> None:
    """Stepped with the same seed and actions, the gymnasium env shows exactly the native env's data."""
    env = gym.make(env_id, **kw)
    host = _host(env)
    native = _native(name, seed=42, **kw)
    rng = np.random.default_rng(0)
    for episode in range(episodes):
        # The first reset seeds the task stream; later ones walk it, on both sides.
        obs, info = env.reset(seed=42 if episode == 0 else None)
        expected = native.reset()
        assert info["run_id"] == native.run_id
        done = False
        while True:
            assert obs in env.observation_space
            back = host.layout.decode(obs)
            assert back.graph.equals(expected.graph)
            np.testing.assert_array_equal(back.action_mask, expected.action_mask)
            if done:
                break
            action = _random_allowed(native, expected.action_mask, rng)
            obs, reward, terminated, truncated, info = env.step(action)
            result = native.step(action)
            assert (reward, terminated, truncated) == (result.reward, result.terminated, result.truncated)
            assert info["action_valid"] and info["applied_action"].tolist() == action.tolist()
            assert {k: info[k] for k in result.info} == result.info
            expected, done = result.observation, terminated or truncated
        assert not truncated  # the epoch budget is observed: its end is termination


def test_kwargs_choose_the_task_stream_split_and_config() -> None:
    env = gym.make("tamiyo/HostSim-v0", task_seed=7, split="eval", epoch_budget=5)
    obs, info = env.reset()
    expected = _native("host-sim", seed=7, split="eval", epoch_budget=5).reset()
    assert _host(env).layout.decode(obs).graph.equals(expected.graph)
    assert info["run_id"].startswith("host-sim/eval/")
    train_obs, _ = gym.make("tamiyo/HostSim-v0", task_seed=7).reset()
    assert not np.array_equal(train_obs[node_key("global")], obs[node_key("global")])
    steps = 0
    terminated = False
    while not terminated:
        _, _, terminated, _, _ = env.step(np.array([OP_WAIT, 0, 0]))
        steps += 1
    assert steps == 5
    with pytest.raises(TypeError, match="unknown host env options"):
        gym.make("tamiyo/HostSim-v0", no_such_option=1)
    with pytest.raises(ValueError, match="split"):
        gym.make("tamiyo/HostSim-v0", split="test")


def test_invalid_actions_run_as_wait_and_unread_heads_are_ignored() -> None:
    env = gym.make("tamiyo/HostSim-v0")
    env.reset(seed=3)
    native = _native("host-sim", seed=3)
    native.reset()

    def step_both(action: list[int], applied: list[int], valid: bool) -> None:
        obs, reward, _, _, info = env.step(np.array(action))
        result = native.step(np.array(applied))
        assert info["applied_action"].tolist() == applied and info["action_valid"] is valid
        assert reward == result.reward
        assert _host(env).layout.decode(obs).graph.equals(result.observation.graph)

    step_both([OP_WAIT, 2, 1], applied=[OP_WAIT, 0, 0], valid=True)  # WAIT reads neither slot nor blueprint
    step_both([OP_CULL, 1, 2], applied=[OP_WAIT, 0, 0], valid=False)  # nothing planted: masked out
    step_both([9, 0, 0], applied=[OP_WAIT, 0, 0], valid=False)  # no such op
    germinate = np.flatnonzero(native.action_mask().reshape(NUM_OPS, -1)[OP_GERMINATE])[0]
    slot, bp = divmod(int(germinate), native.num_blueprints)
    step_both([OP_GERMINATE, slot, bp], applied=[OP_GERMINATE, slot, bp], valid=True)
    step_both([OP_CULL, slot, 2], applied=[OP_CULL, slot, 0], valid=True)  # CULL reads no blueprint

    strict = gym.make("tamiyo/HostSim-v0", invalid_action="raise")
    strict.reset(seed=3)
    with pytest.raises(ValueError, match="masked out"):
        strict.step(np.array([OP_CULL, 0, 0]))
    strict.step(np.array([OP_WAIT, 1, 1]))  # unread heads are still ignored; the episode goes on
    with pytest.raises(ValueError, match="invalid_action"):
        gym.make("tamiyo/HostSim-v0", invalid_action="ignore")


def test_flattened_vector_has_the_declared_shape_and_parts() -> None:
    flat = FlattenGraphObservation(gym.make("tamiyo/HostSim-v0"))
    plain = gym.make("tamiyo/HostSim-v0")
    layout = _host(plain).layout
    space = flat.observation_space
    assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32
    assert space.shape == (sum(s.stop - s.start for s in flat.segments.values()),)
    vec, info = flat.reset(seed=5)
    obs, _ = plain.reset(seed=5)
    flat.action_space.seed(5)
    planted = next(r for r in layout.schema.relations if r.name == "planted_in")
    for _ in range(30):
        assert vec.shape == space.shape and vec.dtype == np.float32 and vec in space
        np.testing.assert_array_equal(info[ACTION_MASK], obs[ACTION_MASK].astype(bool))
        np.testing.assert_array_equal(vec[flat.segments[ACTION_MASK]], obs[ACTION_MASK])
        np.testing.assert_array_equal(vec[flat.segments[node_key("slot")]], obs[node_key("slot")].ravel())
        adjacency = vec[flat.segments["adjacency_blueprint_planted_in_slot"]].reshape(3, 3)
        src, dst = np.nonzero(adjacency)
        edges = obs[edge_key(planted)]
        assert sorted(zip(src, dst, strict=True)) == sorted(zip(*edges[:, edges[0] >= 0], strict=True))
        action = flat.action_space.sample()
        vec, _, terminated, _, info = flat.step(action)
        obs, *_ = plain.step(action)
        if terminated:
            break
    with pytest.raises(TypeError, match="graph layout"):
        FlattenGraphObservation(gym.make("CartPole-v1"))


def test_stable_baselines3_ppo_trains_on_flattened_host_sim(tmp_path) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure

    env = FlattenGraphObservation(gym.make("tamiyo/HostSim-v0"))
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=256, n_epochs=1, device="cpu", seed=0, verbose=0)
    model.set_logger(configure(str(tmp_path), []))  # SB3's default logger leaves a /tmp/SB3-<date> folder per run
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert action.shape == (3,)
