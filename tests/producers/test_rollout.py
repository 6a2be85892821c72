import numpy as np
import pytest

from tamiyo.contracts.graph import ActionHead, GraphSchema, NodeType, PackedGraphs, single_graph
from tamiyo.policy.protocol import PolicyStep
from tamiyo.producers.env_api import Observation, StepResult
from tamiyo.producers.rollout import RolloutCollector

SCHEMA = GraphSchema("scripted", (NodeType("global", 3),), (), (ActionHead("a", 3),))


class ScriptedEnv:
    """Episodes of scripted (length, 'term'|'trunc'); obs = [env, episode, step within episode]."""

    schema = SCHEMA

    def __init__(self, env_index: int, script: list[tuple[int, str]]) -> None:
        self.env_index, self.script = env_index, script
        self.episode, self.t, self.done = -1, 0, True
        self.seeds: list[int | None] = []

    def _obs(self) -> Observation:
        feats = np.array([[self.env_index, self.episode, self.t]], np.float32)
        mask = np.array([True, self.t % 2 == 0, False])
        return Observation(single_graph({"global": feats}, {}), mask)

    def reset(self, seed: int | None = None) -> Observation:
        self.seeds.append(seed)
        self.episode, self.t, self.done = self.episode + 1, 0, False
        return self._obs()

    def step(self, action: np.ndarray) -> StepResult:
        assert not self.done, "step after episode end"
        assert self._obs().action_mask[int(action[0])]
        self.t += 1
        length, kind = self.script[self.episode % len(self.script)]
        end = self.t >= length
        self.done = end
        return StepResult(
            self._obs(),
            reward=float(self.t),
            terminated=end and kind == "term",
            truncated=end and kind == "trunc",
        )


class CountingPolicy:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, graphs: PackedGraphs, masks: np.ndarray) -> PolicyStep:
        self.calls += 1
        n = graphs.num_graphs
        assert masks.shape == (n, 3)
        return PolicyStep(np.zeros((n, 1), np.int32), np.full(n, -0.5, np.float32), version=self.calls)


def feats(p: PackedGraphs) -> np.ndarray:
    return p.node_features["global"]


def test_unrolls_cross_episode_boundaries_correctly():
    envs = [ScriptedEnv(0, [(3, "term"), (4, "trunc")]), ScriptedEnv(1, [(7, "trunc")])]
    col = RolloutCollector(envs, CountingPolicy(), unroll_length=5, seed=10, actor_id="a")
    assert [e.seeds for e in envs] == [[10], [11]]
    first = col.collect()
    second = col.collect()
    for u in first + second:
        u.validate(SCHEMA)
    u0, u1 = first
    # env 0: episode 0 ends (terminated) after step index 2; episode 1 starts at step 3.
    assert u0.terminated.tolist() == [False, False, True, False, False]
    assert u0.truncated.tolist() == [False] * 5
    assert feats(u0.graphs)[:, 1:].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert u0.final_graphs is None
    assert u0.episode_returns.tolist() == [1 + 2 + 3]
    # The bootstrap observation of one unroll is the first observation of the next.
    assert np.array_equal(feats(u0.graphs)[-1], feats(second[0].graphs)[0])
    # env 0, second unroll: episode 1 (len 4, truncated) ends at its step index 1.
    s0 = second[0]
    assert s0.truncated.tolist() == [False, True, False, False, False]
    assert feats(s0.final_graphs).tolist() == [[0, 1, 4]]  # the obs the episode was cut at
    assert feats(s0.graphs)[2].tolist() == [0, 2, 0]  # next row: the new episode
    assert s0.terminated.tolist() == [False, False, False, False, True]  # episode 2 (3 steps) ends
    assert s0.episode_returns.tolist() == [1 + 2 + 3 + 4, 1 + 2 + 3]
    # env 1: one 7-step truncated episode spans both unrolls.
    assert u1.truncated.sum() == 0 and u1.episode_returns.size == 0
    s1 = second[1]
    assert s1.truncated.tolist() == [False, True, False, False, False]
    assert feats(s1.final_graphs).tolist() == [[1, 0, 7]]
    assert s1.episode_returns.tolist() == [sum(range(1, 8))]
    # Book-keeping.
    assert col.env_steps == 20
    assert [(e.env_index, e.ret, e.length) for e in col.episodes] == [
        (0, 6.0, 3),
        (0, 10.0, 4),
        (1, 28.0, 7),
        (0, 6.0, 3),
    ]
    assert [u.sequence for u in first + second] == [0, 1, 2, 3]
    assert u0.policy_versions.tolist() == [1, 2, 3, 4, 5]
    assert u0.behaviour_log_probs.dtype == np.float32 and u0.actions.dtype == np.int32


def test_masks_are_recorded_per_step():
    col = RolloutCollector([ScriptedEnv(0, [(2, "term")])], CountingPolicy(), unroll_length=4)
    (u,) = col.collect()
    # obs steps within episode: 0, 1, 0, 1 -> action 1 allowed on even steps only.
    assert u.action_masks[:, 1].tolist() == [True, False, True, False]
    assert u.terminated.tolist() == [False, True, False, True]


def test_collector_needs_envs():
    with pytest.raises(ValueError):
        RolloutCollector([], CountingPolicy(), unroll_length=4)
