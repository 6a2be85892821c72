"""Step N environments with a policy and cut the stream into fixed-length `Unroll`s.

Independent of Kafka: the in-process learners use it directly and the actor
service publishes what it returns.  Episodes run across unroll boundaries;
an env is reset automatically right after a terminated or truncated step,
so the observation that follows such a step in ``Unroll.graphs`` is the first
of the new episode, and the observation the episode was cut at is kept in
``final_graphs`` (truncation only: it is what the learner bootstraps from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.unroll import Unroll
from tamiyo.policy.protocol import Policy
from tamiyo.producers.env_api import Env, Observation


@dataclass
class Episode:
    env_index: int
    ret: float
    length: int
    env_steps: int  # collector-wide env steps when it ended


@dataclass
class _Trace:
    """What one env produced during the current unroll."""

    graphs: list[PackedGraphs]
    masks: list[np.ndarray]
    finals: list[PackedGraphs]
    returns: list[float]


class RolloutCollector:
    def __init__(
        self,
        envs: Sequence[Env],
        policy: Policy,
        unroll_length: int,
        seed: int | None = None,
        actor_id: str = "",
        env_id: str = "",
    ) -> None:
        if not envs:
            raise ValueError("need at least one env")
        self.envs = list(envs)
        self.policy = policy
        self.unroll_length = unroll_length
        self.actor_id = actor_id
        self.env_id = env_id
        self.sequence = 0
        self.env_steps = 0
        # Every finished episode, in order, until `take_episodes` (a long-running actor takes them after
        # each collect, so this stays bounded; the in-process loops read it whole).
        self.episodes: list[Episode] = []
        self._obs: list[Observation] = [
            env.reset(seed=None if seed is None else seed + i) for i, env in enumerate(self.envs)
        ]
        n = len(self.envs)
        self._ep_return = np.zeros(n, dtype=np.float64)
        self._ep_length = np.zeros(n, dtype=np.int64)

    def take_episodes(self) -> list[Episode]:
        """The episodes finished since the last call, forgotten here."""
        taken, self.episodes = self.episodes, []
        return taken

    def collect(self) -> list[Unroll]:
        """Run ``unroll_length`` steps in every env; one `Unroll` per env, in env order."""
        n, t_len = len(self.envs), self.unroll_length
        h = len(self.envs[0].schema.action_heads)
        traces = [_Trace([], [], [], []) for _ in range(n)]
        actions = np.zeros((t_len, n, h), dtype=np.int32)
        log_probs = np.zeros((t_len, n), dtype=np.float32)
        rewards = np.zeros((t_len, n), dtype=np.float32)
        terminated = np.zeros((t_len, n), dtype=np.bool_)
        truncated = np.zeros((t_len, n), dtype=np.bool_)
        versions = np.zeros((t_len, n), dtype=np.int64)

        for t in range(t_len):
            graphs = PackedGraphs.concat([o.graph for o in self._obs])
            masks = np.stack([o.action_mask for o in self._obs])
            out = self.policy(graphs, masks)
            actions[t] = out.actions
            log_probs[t] = out.log_probs
            versions[t] = out.version
            for i, env in enumerate(self.envs):
                traces[i].graphs.append(self._obs[i].graph)
                traces[i].masks.append(self._obs[i].action_mask)
                res = env.step(actions[t, i])
                rewards[t, i] = res.reward
                terminated[t, i] = res.terminated
                truncated[t, i] = res.truncated and not res.terminated
                self._ep_return[i] += res.reward
                self._ep_length[i] += 1
                self.env_steps += 1
                if res.terminated or res.truncated:
                    if truncated[t, i]:
                        traces[i].finals.append(res.observation.graph)
                    traces[i].returns.append(float(self._ep_return[i]))
                    self.episodes.append(Episode(i, float(self._ep_return[i]), int(self._ep_length[i]), self.env_steps))
                    self._ep_return[i], self._ep_length[i] = 0.0, 0
                    self._obs[i] = env.reset()
                else:
                    self._obs[i] = res.observation

        unrolls = []
        for i in range(n):
            tr = traces[i]
            unrolls.append(
                Unroll(
                    graphs=PackedGraphs.concat([*tr.graphs, self._obs[i].graph]),  # + bootstrap obs
                    actions=np.ascontiguousarray(actions[:, i]),
                    action_masks=np.stack(tr.masks).astype(np.bool_),
                    behaviour_log_probs=np.ascontiguousarray(log_probs[:, i]),
                    rewards=np.ascontiguousarray(rewards[:, i]),
                    terminated=np.ascontiguousarray(terminated[:, i]),
                    truncated=np.ascontiguousarray(truncated[:, i]),
                    final_graphs=PackedGraphs.concat(tr.finals) if tr.finals else None,
                    policy_versions=np.ascontiguousarray(versions[:, i]),
                    actor_id=self.actor_id,
                    sequence=self.sequence,
                    env_id=self.env_id,
                    episode_returns=np.asarray(tr.returns, dtype=np.float32),
                )
            )
            self.sequence += 1
        return unrolls
