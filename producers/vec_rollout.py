"""`VecRolloutCollector`: step a `VecEnv` with a policy and cut the stream into one `Unroll` per env.

The same unrolls as `RolloutCollector` over the same envs (tested): one forward pass acts for all N envs
per step, and the per-step arrays (graphs, masks, actions, rewards, ends) are kept as they come, then cut
into per-env unrolls once per collect with array slicing instead of per-env, per-step Python.
"""

from __future__ import annotations

import numpy as np

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.unroll import Unroll
from tamiyo.policy.protocol import Policy
from tamiyo.producers.rollout import Episode
from tamiyo.producers.vec_env import VecEnv, VecObservation


class VecRolloutCollector:
    def __init__(
        self,
        env: VecEnv,
        policy: Policy,
        unroll_length: int,
        seed: int | None = None,
        actor_id: str = "",
        env_id: str = "",
    ) -> None:
        self.env = env
        self.policy = policy
        self.unroll_length = unroll_length
        self.actor_id = actor_id
        self.env_id = env_id
        self.sequence = 0
        self.env_steps = 0
        # Every finished episode, in order, until `take_episodes` (a long-running actor takes them after
        # each collect, so this stays bounded; the in-process loops read it whole).
        self.episodes: list[Episode] = []
        n = env.num_envs
        seeds = [None if seed is None else seed + i for i in range(n)]
        self._obs: VecObservation = env.reset(seeds)
        self._ep_return = np.zeros(n, dtype=np.float64)
        self._ep_length = np.zeros(n, dtype=np.int64)

    def take_episodes(self) -> list[Episode]:
        """The episodes finished since the last call, forgotten here."""
        taken, self.episodes = self.episodes, []
        return taken

    def collect(self) -> list[Unroll]:
        """Run ``unroll_length`` steps in every env; one `Unroll` per env, in env order."""
        n, t_len = self.env.num_envs, self.unroll_length
        h = len(self.env.schema.action_heads)
        step_graphs: list[PackedGraphs] = []
        masks = np.zeros((t_len, n, self.env.schema.joint_action_count), dtype=np.bool_)
        actions = np.zeros((t_len, n, h), dtype=np.int32)
        log_probs = np.zeros((t_len, n), dtype=np.float32)
        rewards = np.zeros((t_len, n), dtype=np.float32)
        terminated = np.zeros((t_len, n), dtype=np.bool_)
        truncated = np.zeros((t_len, n), dtype=np.bool_)
        versions = np.zeros((t_len, n), dtype=np.int64)
        finals: list[tuple[int, np.ndarray, PackedGraphs]] = []  # (step, envs that truncated, their final graphs)
        returns: list[list[float]] = [[] for _ in range(n)]

        for t in range(t_len):
            obs = self._obs
            out = self.policy(obs.graphs, obs.action_masks)
            step_graphs.append(obs.graphs)
            masks[t] = obs.action_masks
            actions[t] = out.actions
            log_probs[t] = out.log_probs
            versions[t] = out.version
            res = self.env.step(actions[t])
            rewards[t] = res.rewards
            terminated[t] = res.terminated
            truncated[t] = res.truncated & ~res.terminated
            self._ep_return += res.rewards  # float64, as the scalar collector sums them
            self._ep_length += 1
            ended = np.flatnonzero(res.terminated | res.truncated)
            if ended.size:
                assert res.final_graphs is not None, "an env ended without its final observation"
                trunc_of_ended = truncated[t][ended]
                if trunc_of_ended.any():
                    finals.append((t, ended[trunc_of_ended], res.final_graphs.select(np.flatnonzero(trunc_of_ended))))
                for i in ended.tolist():
                    ret = float(self._ep_return[i])
                    returns[i].append(ret)
                    self.episodes.append(Episode(i, ret, int(self._ep_length[i]), self.env_steps + i + 1))
                self._ep_return[ended] = 0.0
                self._ep_length[ended] = 0
            self.env_steps += n
            self._obs = res.observation

        # Time-major (T + 1) x N graphs -> env-major: env i's T observations and its bootstrap, in order.
        everything = PackedGraphs.concat([*step_graphs, self._obs.graphs])
        order = (np.arange(t_len + 1)[None, :] * n + np.arange(n)[:, None]).reshape(-1)
        per_env = everything.select(order).split([t_len + 1] * n)
        unrolls = []
        for i in range(n):
            env_finals = [g.select(np.flatnonzero(envs == i)) for _, envs, g in finals if (envs == i).any()]
            unrolls.append(
                Unroll(
                    graphs=per_env[i],
                    actions=np.ascontiguousarray(actions[:, i]),
                    action_masks=np.ascontiguousarray(masks[:, i]),
                    behaviour_log_probs=np.ascontiguousarray(log_probs[:, i]),
                    rewards=np.ascontiguousarray(rewards[:, i]),
                    terminated=np.ascontiguousarray(terminated[:, i]),
                    truncated=np.ascontiguousarray(truncated[:, i]),
                    final_graphs=PackedGraphs.concat(env_finals) if env_finals else None,
                    policy_versions=np.ascontiguousarray(versions[:, i]),
                    actor_id=self.actor_id,
                    sequence=self.sequence,
                    env_id=self.env_id,
                    episode_returns=np.asarray(returns[i], dtype=np.float32),
                )
            )
            self.sequence += 1
        return unrolls
