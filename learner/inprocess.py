"""In-process training loops (no bus): the CartPole learning proofs and quick experiments.

The loops do not build environments: they get a `CollectorFactory` that, given the behaviour policy,
the number of envs and the unroll length, returns an `ExperienceSource` (a `RolloutCollector` over
gym or host envs: the producers' `experience.env_collectors`).  So the learner never imports the producers,
and the same `ImpalaLearner` / `PPOLearner` cores run here, in `bench/` and in the learner service.

PPO: the collector acts with the learner's own network (on-policy).
IMPALA: the collector acts with a *copy* of the network refreshed every
``refresh_every`` learner steps, so the behaviour policy lags the learner by
0..refresh_every-1 versions and V-trace has real off-policy data to correct.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from tamiyo.contracts.graph import GraphSchema
from tamiyo.contracts.unroll import Unroll
from tamiyo.learner.impala import ImpalaConfig, ImpalaLearner
from tamiyo.learner.ppo import PPOConfig, PPOLearner
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.policy.protocol import Policy


class FinishedEpisode(Protocol):
    @property
    def ret(self) -> float: ...

    @property
    def env_steps(self) -> int:
        """Collector-wide env steps when the episode ended."""
        ...


class ExperienceSource(Protocol):
    """Steps envs with a policy; every finished episode is kept, in order."""

    @property
    def env_steps(self) -> int: ...

    @property
    def episodes(self) -> Sequence[FinishedEpisode]: ...

    def collect(self) -> list[Unroll]:
        """One unroll per env."""
        ...


CollectorFactory = Callable[[Policy, int, int], ExperienceSource]  # (policy, num envs, unroll length)


@dataclass
class LearningCurve:
    algo: str
    env_id: str
    seed: int
    threshold: float | None
    window: int
    points: list[tuple[int, float]] = field(default_factory=list)  # (env steps, mean of last `window` returns)
    reached_at: int | None = None  # env steps when the windowed mean first reached the threshold
    env_steps: int = 0
    updates: int = 0
    wall_s: float = 0.0
    last_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "algo": self.algo,
            "env_id": self.env_id,
            "seed": self.seed,
            "threshold": self.threshold,
            "window": self.window,
            "reached_at": self.reached_at,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall_s": round(self.wall_s, 2),
            "final_mean_return": self.points[-1][1] if self.points else None,
            "curve": [[s, round(r, 2)] for s, r in self.points],
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _track(curve: LearningCurve, source: ExperienceSource, seen: int) -> int:
    """Append windowed means for episodes finished since ``seen``; note the first threshold hit."""
    eps = source.episodes
    for k in range(seen, len(eps)):
        recent = [e.ret for e in eps[max(0, k + 1 - curve.window) : k + 1]]
        mean = float(np.mean(recent))
        curve.points.append((eps[k].env_steps, mean))
        full = len(recent) == curve.window
        if curve.reached_at is None and curve.threshold is not None and full and mean >= curve.threshold:
            curve.reached_at = eps[k].env_steps
    return len(eps)


def train_ppo(
    schema: GraphSchema,
    make_collector: CollectorFactory,
    config: PPOConfig,
    seed: int,
    model_config: ModelConfig | None = None,
    threshold: float | None = None,
    window: int = 20,
    stop_at_threshold: bool = True,
    device: torch.device | str = "cpu",
    env_id: str = "",
) -> LearningCurve:
    seed_everything(seed)
    model = TamiyoGNN(schema, model_config).to(device)
    learner = PPOLearner(model, config, device, seed=seed)
    policy = ModelPolicy(model, version=0, device=device)
    source = make_collector(policy, config.num_envs, config.rollout_length)
    curve = LearningCurve("ppo", env_id or schema.name, seed, threshold, window)
    start, seen = time.perf_counter(), 0
    while source.env_steps < config.total_env_steps:
        unrolls = source.collect()
        seen = _track(curve, source, seen)
        if stop_at_threshold and curve.reached_at is not None:
            break
        curve.last_metrics = learner.update(unrolls)
        policy.version = learner.version
    curve.env_steps, curve.updates = source.env_steps, learner.version
    curve.wall_s = time.perf_counter() - start
    return curve


def train_impala(
    schema: GraphSchema,
    make_collector: CollectorFactory,
    config: ImpalaConfig,
    seed: int,
    total_env_steps: int,
    refresh_every: int = 4,
    model_config: ModelConfig | None = None,
    threshold: float | None = None,
    window: int = 20,
    stop_at_threshold: bool = True,
    device: torch.device | str = "cpu",
    env_id: str = "",
) -> LearningCurve:
    seed_everything(seed)
    model = TamiyoGNN(schema, model_config).to(device)
    learner = ImpalaLearner(model, config, device)
    actor_model = copy.deepcopy(model)  # the lagging behaviour policy
    policy = ModelPolicy(actor_model, version=0, device=device)
    source = make_collector(policy, config.batch_size, config.unroll_length)
    curve = LearningCurve("impala", env_id or schema.name, seed, threshold, window)
    start, seen = time.perf_counter(), 0
    lags: list[float] = []
    while source.env_steps < total_env_steps:
        unrolls = source.collect()
        seen = _track(curve, source, seen)
        if stop_at_threshold and curve.reached_at is not None:
            break
        result = learner.step(unrolls)
        curve.last_metrics = result.metrics
        lags.append(result.metrics.get("policy_lag_mean", 0.0))
        if learner.version % refresh_every == 0:
            actor_model.load_state_dict(model.state_dict())
            policy.version = learner.version
    curve.env_steps, curve.updates = source.env_steps, learner.version
    curve.wall_s = time.perf_counter() - start
    curve.last_metrics["policy_lag_mean_overall"] = float(np.mean(lags)) if lags else 0.0
    return curve
