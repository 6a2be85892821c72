import numpy as np
import pytest

from tamiyo.contracts.env_schemas import env_schema
from tamiyo.producers.gym_env import GymGraphEnv


def test_cartpole_as_one_node_graph():
    env = GymGraphEnv("gym:CartPole-v1")
    schema = env.schema
    assert schema == env_schema("gym:CartPole-v1")  # what the learner reads without an env
    assert [n.name for n in schema.node_types] == ["global"] and schema.relations == ()
    assert schema.head_sizes == (2,) and schema.action_heads[0].node_type is None
    obs = env.reset(seed=3)
    obs.graph.validate(schema)
    assert obs.graph.num_graphs == 1 and obs.graph.node_features["global"].shape == (1, 4)
    assert obs.action_mask.tolist() == [True, True]
    again = GymGraphEnv("CartPole-v1").reset(seed=3)
    assert np.array_equal(again.graph.node_features["global"], obs.graph.node_features["global"])


def test_episode_end_and_reset_rules():
    env = GymGraphEnv("gym:CartPole-v1")
    with pytest.raises(RuntimeError):
        env.step(np.array([0]))
    env.reset(seed=0)
    steps, res = 0, None
    while True:
        res = env.step(np.array([0]))  # always push left: terminates quickly
        steps += 1
        if res.terminated or res.truncated:
            break
    assert res.terminated and not res.truncated and steps < 100
    with pytest.raises(RuntimeError):
        env.step(np.array([0]))
    env.reset()
    with pytest.raises(ValueError):
        env.step(np.array([5]))


def test_time_limit_is_truncation():
    env = GymGraphEnv("gym:CartPole-v1", max_episode_steps=5)
    env.reset(seed=0)
    results = [env.step(np.array([i % 2])) for i in range(5)]
    assert [r.truncated for r in results] == [False] * 4 + [True]
    assert not any(r.terminated for r in results)
