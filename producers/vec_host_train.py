"""`VecHostTrain`: N host-train envs whose host networks train as one batch (`BatchedHosts`).

Each env is a `HostEnv` shell (lifecycle, masks, reward, observation: cheap Python) over a `HostSlot`,
host i of one shared `BatchedHosts`.  A step runs every shell's first half (`HostEnv.begin_epoch`:
the action, the alpha ramp), trains all N hosts' epochs in one batched call, then every shell's
second half (`HostEnv.finish_epoch`); the envs whose episode ended load their next task and are
measured together.  Env i draws exactly what ``make_env("host-train", seed=seeds[i])`` draws (tasks,
weights, minibatch orders) and trains as `TorchHost` does, to float rounding per epoch
(tests/producers/test_vec_host_train.py).

With ``paired_baseline`` (the env ``host-train:paired``), every env's host has a twin, host N + i of the same
batch: it loads the same task, weights and minibatch orders (a copy of the task RNG) and trains every epoch as
the `none` controller would (no seeds, the task's initial LR).  Env i's reward is its own minus the twin's
accuracy change, so an episode's return is its gain over `none` on that very task.  The twin's accuracy does
not depend on the actions, so this only subtracts a per-task constant from every return (the best policy is
the same), but it takes the task's difficulty and most of the SGD noise out of the learning signal: on
host-train the return varies ~0.2 across tasks, while the best fixed schedule gains ~0.02 over `none`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.producers.batched_hosts import BatchedHosts
from tamiyo.producers.blueprints import CATALOG, Blueprint
from tamiyo.producers.env_api import Observation
from tamiyo.producers.host_backend import EpochStats, HostConfig, HostShape
from tamiyo.producers.host_env import HostEnv
from tamiyo.producers.vec_env import VecObservation, VecStepResult, batch_observations


class HostSlot:
    """Host i of a `BatchedHosts` as a `HostBackend`: a `HostEnv` over it also works on its own (one host
    trained per call, so slowly); `VecHostTrain` drives the shared batch instead."""

    def __init__(self, hosts: BatchedHosts, index: int) -> None:
        self.hosts, self.index, self.num_slots = hosts, index, hosts.num_slots

    def new_task(self, rng: np.random.Generator) -> tuple[HostShape, EpochStats]:
        shape = self.hosts.load_task(self.index, rng)
        return shape, self.hosts.initial_stats([self.index])[0]

    def plant(self, slot: int, blueprint: Blueprint) -> None:
        self.hosts.plant(self.index, slot, blueprint)

    def remove(self, slot: int) -> None:
        self.hosts.remove(self.index, slot)

    def train_epoch(self, lr: float, alphas: list[float], seed_trains: list[bool]) -> EpochStats:
        n, s = self.hosts.num_hosts, self.num_slots
        lrs, all_alphas, trains = np.zeros(n), np.zeros((n, s)), np.zeros((n, s), dtype=bool)
        lrs[self.index], all_alphas[self.index], trains[self.index] = lr, alphas, seed_trains
        active = np.arange(n) == self.index
        stats = self.hosts.train_epoch(lrs, all_alphas, trains, active)[self.index]
        assert stats is not None  # the active host always reports
        return stats


class VecHostTrain:
    """N host-train envs behind the `VecEnv` API (producers/vec_env.py); see the module docstring."""

    def __init__(
        self,
        num_envs: int,
        seeds: Sequence[int],
        config: HostConfig | None = None,
        width: int = 8,
        paired_baseline: bool = False,
    ) -> None:
        if num_envs < 1 or len(seeds) != num_envs:
            raise ValueError(f"need num_envs >= 1 and one seed per env, got {num_envs} envs, {len(seeds)} seeds")
        cfg = config or HostConfig()
        self.config, self.num_envs, self.paired_baseline = cfg, num_envs, paired_baseline
        self.hosts = BatchedHosts(num_envs * (2 if paired_baseline else 1), cfg.num_slots, width)
        self._twin_lr = np.zeros(num_envs)  # paired: each twin's LR (its task's initial LR) and last accuracy
        self._twin_acc = np.zeros(num_envs)
        self.envs = [
            HostEnv(HostSlot(self.hosts, i), "host-train", seed=s, config=cfg, blueprints=CATALOG)
            for i, s in enumerate(seeds)
        ]
        self.schema = self.envs[0].schema
        self._observations: list[Observation | None] = [None] * num_envs

    def reset(self, seeds: Sequence[int | None] | None = None) -> VecObservation:
        seeds = list(seeds) if seeds is not None else [None] * self.num_envs
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        self._start(list(range(self.num_envs)), seeds)
        return self._batch()

    def step(self, actions: np.ndarray) -> VecStepResult:
        n, s = self.num_envs, self.config.num_slots
        for i, env in enumerate(self.envs):  # refuse a bad batch before any env has applied its action
            try:
                env.check_action(actions[i])
            except ValueError as err:
                raise ValueError(f"env {i}: {err}") from err
        plans = [env.begin_epoch(actions[i]) for i, env in enumerate(self.envs)]
        lrs = np.array([p.lr for p in plans])
        alphas = np.array([p.alphas for p in plans], dtype=np.float64).reshape(n, s)
        trains = np.array([p.trains for p in plans], dtype=bool).reshape(n, s)
        if self.paired_baseline:  # the twins: no seeds (alpha 0, nothing learns), the initial LR
            lrs = np.concatenate([lrs, self._twin_lr])
            alphas = np.concatenate([alphas, np.zeros((n, s))])
            trains = np.concatenate([trains, np.zeros((n, s), dtype=bool)])
        stats = self.hosts.train_epoch(lrs, alphas, trains)
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=np.bool_)
        infos: list[dict[str, Any]] = []
        finals: list[PackedGraphs] = []
        ended: list[int] = []
        for i, env in enumerate(self.envs):
            st = stats[i]
            assert st is not None  # every host is active
            res = env.finish_epoch(plans[i], st)
            rewards[i], terminated[i] = res.reward, res.terminated
            if self.paired_baseline:
                twin = stats[n + i]
                assert twin is not None
                res.info["none_acc_gain"] = gain = twin.val_acc - self._twin_acc[i]
                rewards[i] -= gain
                self._twin_acc[i] = twin.val_acc
            infos.append(res.info)
            self._observations[i] = res.observation
            if res.terminated:  # host envs end by termination only (the epoch is observed)
                finals.append(res.observation.graph)
                ended.append(i)
        if ended:
            self._start(ended, [None] * len(ended))
        final_graphs = PackedGraphs.concat(finals) if finals else None
        truncated = np.zeros(n, dtype=np.bool_)
        return VecStepResult(self._batch(), rewards, terminated, truncated, final_graphs, infos)

    def _start(self, envs: list[int], seeds: Sequence[int | None]) -> None:
        """Load the next task of each of ``envs`` and measure them together (`HostEnv.reset`, batched)."""
        drawn = []
        n, twins = self.num_envs, [self.num_envs + i for i in envs] if self.paired_baseline else []
        for i, seed in zip(envs, seeds, strict=True):
            rng, task_seed = self.envs[i].task_rng(seed)
            twin_rng = copy.deepcopy(rng) if self.paired_baseline else None  # before the host draws: the same draws
            drawn.append((task_seed, self.hosts.load_task(i, rng)))
            if twin_rng is not None:
                self._twin_lr[i] = self.hosts.load_task(n + i, twin_rng).initial_lr
        stats = self.hosts.initial_stats(envs + twins)
        for i, (task_seed, shape), st in zip(envs, drawn, stats[: len(envs)], strict=True):
            self._observations[i] = self.envs[i].start_episode(task_seed, shape, st)
        if self.paired_baseline:
            for i, st in zip(envs, stats[len(envs) :], strict=True):
                self._twin_acc[i] = st.val_acc

    def _batch(self) -> VecObservation:
        obs = [o for o in self._observations if o is not None]
        if len(obs) != self.num_envs:
            raise RuntimeError("call reset() first")
        return batch_observations(obs)
