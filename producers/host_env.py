"""`HostEnv`: the morphogenetic environment shell shared by host-train and host-sim.

The shell owns everything the controller sees and may do: the epoch clock, the
seed slots and their lifecycle, the learning-rate steps, the parameter budget,
the joint action mask, the reward and the Leyline views.  A `HostBackend` owns
the host itself (a real torch MLP, or a surrogate) and only answers "train one
epoch with these seed weights".  An episode is ``epoch_budget`` steps; the
epoch is observed, so its end is termination, not truncation.

The parts, one job each:

- host_backend.py: the backend protocol, what it reports, `HostConfig`;
- seed_slots.py: `SeedSlot` and the lifecycle operations on it (table in lifecycle.py);
- host_episode.py: the episode state and its per-epoch bookkeeping (reward = acc gain − rent);
- host_masks.py: the joint action mask;
- host_features.py: the observation graph;
- host_views.py: the Leyline views and the plain-dict ``info``.

The names other modules import from here (HostConfig, EpochStats, HostShape,
SeedSlot, ...) stay importable from this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tamiyo.contracts.host_schema import (
    NUM_OPS,
    OP_ADVANCE,
    OP_CULL,
    OP_GERMINATE,
    OP_LR_DOWN,
    OP_LR_UP,
    OPS,
    host_schema,
)
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.producers import host_views, seed_slots
from tamiyo.producers import lifecycle as lc
from tamiyo.producers.blueprints import CATALOG, Blueprint
from tamiyo.producers.env_api import Observation, StepResult
from tamiyo.producers.host_backend import SPLIT_CODES, EpochStats, HostBackend, HostConfig, HostShape
from tamiyo.producers.host_episode import Episode
from tamiyo.producers.host_features import HostFeatures
from tamiyo.producers.host_masks import joint_action_mask, mask_allows
from tamiyo.producers.seed_slots import SeedSlot, Stage

__all__ = ["EpochPlan", "EpochStats", "HostBackend", "HostConfig", "HostEnv", "HostShape", "SeedSlot", "Stage"]


@dataclass(frozen=True)
class EpochPlan:
    """What one step asks the backend to train: the LR, each slot's output weight and whether its seed learns."""

    lr: float
    alphas: list[float]
    trains: list[bool]
    held: int  # seed parameters held during the epoch (the rent's base)


class HostEnv:
    """One morphogenetic training run per episode; see the module docstring."""

    def __init__(
        self,
        backend: HostBackend,
        name: str,
        seed: int = 0,
        config: HostConfig | None = None,
        blueprints: tuple[Blueprint, ...] = CATALOG,
    ) -> None:
        self.config = config or HostConfig()
        if backend.num_slots != self.config.num_slots:
            raise ValueError("backend and config disagree on the number of slots")
        if self.config.split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}")
        self.backend = backend
        self.name = name
        self.blueprints = blueprints
        s, b = self.config.num_slots, len(blueprints)
        self.num_slots, self.num_blueprints = s, b
        self.schema = host_schema(s, b)
        self._features = HostFeatures(self.config, blueprints)
        self._seed_stream = np.random.SeedSequence([SPLIT_CODES[self.config.split], seed])
        self._ep: Episode | None = None
        self._obs: Observation | None = None
        self.run_id = ""

    # ------------------------------------------------------------------ Env protocol

    def reset(self, seed: int | None = None) -> Observation:
        rng, task_seed = self.task_rng(seed)
        shape, stats = self.backend.new_task(rng)
        return self.start_episode(task_seed, shape, stats)

    def task_rng(self, seed: int | None = None) -> tuple[np.random.Generator, int]:
        """The task RNG of the next episode and its task seed (``reset``'s first half)."""
        # Without a seed: a fresh task per episode, reproducible from the constructor seed.
        task_seed = int(self._seed_stream.spawn(1)[0].generate_state(1)[0]) if seed is None else int(seed)
        return np.random.default_rng([SPLIT_CODES[self.config.split], task_seed]), task_seed

    def start_episode(self, task_seed: int, shape: HostShape, stats: EpochStats) -> Observation:
        """Start the episode on the task the backend drew (``reset``'s second half)."""
        costs = seed_slots.seed_costs(shape, self.blueprints, self.num_slots)
        budget_total = int(self.config.param_budget * shape.base_params)
        self._ep = Episode.start(shape, stats, self.num_slots, costs, budget_total)
        self.run_id = f"{self.name}/{self.config.split}/{task_seed}"
        self._features.begin_episode(shape, costs)
        self._obs = self._observe()
        return self._obs

    def step(self, action: np.ndarray) -> StepResult:
        epoch = self.begin_epoch(action)
        stats = self.backend.train_epoch(epoch.lr, epoch.alphas, epoch.trains)
        return self.finish_epoch(epoch, stats)

    def begin_epoch(self, action: np.ndarray) -> EpochPlan:
        """Apply ``action`` and ramp the alphas: what the backend must train next (``step``'s first half;
        a batched backend trains many envs' epochs in one call between the halves)."""
        ep = self._require_live()
        op, slot, bp = self.check_action(action)
        self._apply(ep, op, slot, bp)
        seed_slots.ramp_alphas(ep.slots, self.config.blend_epochs)
        return EpochPlan(
            lr=ep.lr,
            alphas=[s.alpha for s in ep.slots],
            trains=[s.stage in lc.LEARNING for s in ep.slots],
            held=ep.added_params(),  # rent is charged on what the seeds hold during the epoch
        )

    def check_action(self, action: np.ndarray) -> tuple[int, int, int]:
        """(op, slot, blueprint) of ``action``; ValueError if the current observation's mask forbids it."""
        op, slot, bp = map(int, np.asarray(action).ravel()[:3].tolist())
        if not self._allowed_now(op, slot, bp):
            raise ValueError(f"action {OPS[op] if 0 <= op < NUM_OPS else op}({slot}, {bp}) is masked out")
        return op, slot, bp

    def finish_epoch(self, epoch: EpochPlan, stats: EpochStats) -> StepResult:
        """Book the trained epoch: reward, lifecycle clock, next observation (``step``'s second half)."""
        ep = self._require_live()
        cfg = self.config
        reward, rent = ep.close_epoch(stats, epoch.held, cfg.rent_rate)
        seed_slots.end_epoch(ep.slots, cfg.embargo_epochs)
        ep.done = ep.epoch >= cfg.epoch_budget
        self._obs = self._observe()
        # Small on purpose (the actor hot path); controllers read the full view from env.info().
        info = {
            "epoch": ep.epoch,
            "val_acc": stats.val_acc,
            "rent": rent,
            "rent_total": ep.rent_total,
            "initial_acc": ep.initial_acc,
            "added_params": epoch.held,
        }
        return StepResult(self._obs, float(reward), ep.done, False, info)

    # ------------------------------------------------------------------ queries

    @property
    def lr(self) -> float:
        return self._require_episode().lr

    def added_params(self) -> int:
        return self._require_episode().added_params()

    def blueprint_cost(self, slot: int, bp: int) -> int:
        """Parameters blueprint ``bp`` adds at ``slot`` (seeds read the slot's layer input)."""
        return self._require_episode().costs[slot][bp]

    def budget_left(self) -> int:
        return self._require_episode().budget_left()

    def can_advance(self, slot: SeedSlot) -> bool:
        return seed_slots.can_advance(slot, self.config.probation_epochs)

    def is_allowed(self, op: int, slot: int, bp: int) -> bool:
        if not (0 <= op < NUM_OPS and 0 <= slot < self.num_slots and 0 <= bp < self.num_blueprints):
            return False  # before action_mask(): out-of-range queries need no episode
        return mask_allows(self.action_mask(), op, slot, bp, self.num_slots, self.num_blueprints)

    def action_mask(self, budget_left: int | None = None) -> np.ndarray:
        ep = self._require_episode()
        cfg = self.config
        return joint_action_mask(
            ep.slots,
            ep.costs,
            self.num_blueprints,
            budget_left=ep.budget_left() if budget_left is None else budget_left,
            lr_step=ep.lr_step,
            lr_steps=cfg.lr_steps,
            probation_epochs=cfg.probation_epochs,
            done=ep.done,
        )

    def info(self) -> dict[str, Any]:
        """Plain-Python view of the current state (what the baseline controllers read)."""
        return host_views.env_info(self._require_episode(), self.config, self.blueprints)

    @property
    def slots(self) -> list[SeedSlot]:
        return self._require_episode().slots

    # ------------------------------------------------------------------ Leyline views

    def state_packet(self, include_graph: bool = True) -> pb.SystemStatePacket:
        ep = self._require_episode()
        observation = self._obs if include_graph else None
        return host_views.state_packet(ep, self.run_id, self.blueprints, observation, self.schema.name)

    def command_for(self, action: np.ndarray, log_prob: float = 0.0, policy_version: int = 0) -> pb.AdaptationCommand:
        ep = self._require_episode()
        return host_views.command_for(ep, self.run_id, self.blueprints, action, log_prob, policy_version)

    # ------------------------------------------------------------------ internals

    def _require_episode(self) -> Episode:
        if self._ep is None:
            raise RuntimeError("call reset() first")
        return self._ep

    def _require_live(self) -> Episode:
        ep = self._require_episode()
        if ep.done:
            raise RuntimeError("step() after the episode ended; call reset()")
        return ep

    def _allowed_now(self, op: int, slot: int, bp: int) -> bool:
        # The mask of the observation the action answers (computed once per step).
        if self._obs is None:
            return False
        return mask_allows(self._obs.action_mask, op, slot, bp, self.num_slots, self.num_blueprints)

    def _apply(self, ep: Episode, op: int, i: int, bp: int) -> None:
        """The chosen op's effect: on the slot (lifecycle) and, for germinate / cull, on the host."""
        if op == OP_GERMINATE:
            seed_slots.germinate(ep.slots[i], bp, ep.costs[i][bp], ep.stats.val_acc)
            self.backend.plant(i, self.blueprints[bp])
        elif op == OP_ADVANCE:
            seed_slots.advance(ep.slots[i], self.config.blend_epochs)
        elif op == OP_CULL:
            seed_slots.cull(ep.slots[i])
            self.backend.remove(i)
        elif op == OP_LR_UP:
            ep.lr_step += 1
        elif op == OP_LR_DOWN:
            ep.lr_step -= 1

    def _observe(self) -> Observation:
        ep = self._require_episode()
        added = ep.added_params()
        left = ep.budget_total - added
        return Observation(graph=self._features.graph(ep, added, left), action_mask=self.action_mask(left))
