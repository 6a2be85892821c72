"""`HostEnv`: the morphogenetic environment shell shared by host-train and host-sim.

The shell owns everything the controller sees and may do: the epoch clock, the
seed slots and their lifecycle (table in lifecycle.py), the learning-rate
steps, the parameter budget, the joint action mask, the reward and the Leyline
views.  A `HostBackend` owns the host itself (a real torch MLP, or a
surrogate) and only answers "train one epoch with these seed weights".

Reward of a step = (val acc after the epoch − val acc before) − rent, where
rent = rent_rate × (parameters held by seeds during the epoch) / (host base
parameters).  Over an episode the rewards telescope to
final acc − initial acc − total rent (tested).  An episode is ``epoch_budget``
steps; the epoch is observed, so its end is termination, not truncation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tamiyo.contracts.codec import SCHEMA_VERSION
from tamiyo.contracts.commands import command_from_action
from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.host_schema import (
    BLUEPRINT_FEATURES,
    DEFAULT_NUM_SLOTS,
    LAYER_FEATURES,
    NUM_OPS,
    OP_ADVANCE,
    OP_CULL,
    OP_GERMINATE,
    OP_LR_DOWN,
    OP_LR_UP,
    OPS,
    SLOT_STAGES,
    host_schema,
    static_edges,
)
from tamiyo.contracts.packing import graphs_to_proto, pack_mask
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.producers import lifecycle as lc
from tamiyo.producers.blueprints import CATALOG, KINDS, Blueprint
from tamiyo.producers.env_api import Observation, StepResult

Stage = lc.Stage


@dataclass(frozen=True)
class HostShape:
    """The static shape of one task's host network (L = S + 1 Linear layers)."""

    layer_fan_in: tuple[int, ...]
    layer_fan_out: tuple[int, ...]
    slot_width: int
    base_params: int
    num_classes: int
    initial_lr: float


@dataclass
class EpochStats:
    """What the backend measured after one epoch (or at reset, before training)."""

    val_acc: float
    val_loss: float  # cross-entropy, nats
    train_loss: float
    loss_variance: float
    grad_norm: float
    layer_weight_rms: np.ndarray  # [L]
    layer_grad_rms: np.ndarray  # [L]
    layer_dead_fraction: np.ndarray  # [L]
    slot_pressure: np.ndarray  # [S] RMS gradient at the slot's activation
    seed_grad_rms: np.ndarray  # [S] 0 where there is no seed
    seed_blend_gain: np.ndarray  # [S] -dL/dalpha / loss, 0 where there is no seed


class HostBackend(Protocol):
    num_slots: int

    def new_task(self, rng: np.random.Generator) -> tuple[HostShape, EpochStats]:
        """Draw a task and a fresh host from ``rng``; return its shape and untrained stats."""
        ...

    def plant(self, slot: int, blueprint: Blueprint) -> None: ...

    def remove(self, slot: int) -> None: ...

    def train_epoch(self, lr: float, alphas: list[float], seed_trains: list[bool]) -> EpochStats:
        """One epoch.  ``alphas[s]``: output weight of the seed at s; ``seed_trains[s]``: it learns."""
        ...


@dataclass
class HostConfig:
    num_slots: int = DEFAULT_NUM_SLOTS
    epoch_budget: int = 30
    rent_rate: float = 0.0003  # reward per epoch per 100% of base parameters held by seeds
    param_budget: float = 3.0  # seeds may add at most this fraction of the base parameters
    blend_epochs: int = 3  # alpha ramp length
    embargo_epochs: int = 3
    probation_epochs: int = 1  # before fossilization is allowed
    lr_steps: int = 3  # LR may move this many doublings/halvings from its initial value
    split: str = "train"  # "train" | "eval": disjoint task streams (held-out tasks)


@dataclass
class SeedSlot:
    stage: int = Stage.DORMANT
    blueprint: int = -1  # catalog index, -1 without a seed
    alpha: float = 0.0
    epochs_in_stage: int = 0
    params: int = 0
    acc_at_germination: float = 0.0
    embargo_left: int = 0


_SPLIT_CODES = {"train": 0, "eval": 1}
_PLANTED = ("blueprint", "planted_in", "slot")
_GROWS = ("slot", "grows", "blueprint")


@dataclass
class _Episode:
    shape: HostShape
    stats: EpochStats
    slots: list[SeedSlot]
    epoch: int = 0
    lr_step: int = 0
    initial_acc: float = 0.0
    prev_val_loss: float = 0.0
    prev_val_acc: float = 0.0
    best_val_loss: float = math.inf
    plateau: int = 0
    rent_total: float = 0.0
    done: bool = False
    history: list[float] = field(default_factory=list)


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
        if self.config.split not in _SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}")
        self.backend = backend
        self.name = name
        self.blueprints = blueprints
        s, b = self.config.num_slots, len(blueprints)
        self.num_slots, self.num_blueprints = s, b
        self.schema = host_schema(s, b)
        self._static_edges = static_edges(s, b)
        self._seed_stream = np.random.SeedSequence([_SPLIT_CODES[self.config.split], seed])
        self._ep: _Episode | None = None
        self._planted_cache: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._obs: Observation | None = None
        self.run_id = ""

    # ------------------------------------------------------------------ Env protocol

    def reset(self, seed: int | None = None) -> Observation:
        # Without a seed: a fresh task per episode, reproducible from the constructor seed.
        task_seed = int(self._seed_stream.spawn(1)[0].generate_state(1)[0]) if seed is None else int(seed)
        rng = np.random.default_rng([_SPLIT_CODES[self.config.split], task_seed])
        shape, stats = self.backend.new_task(rng)
        self._ep = _Episode(
            shape=shape,
            stats=stats,
            slots=[SeedSlot() for _ in range(self.num_slots)],
            initial_acc=stats.val_acc,
            prev_val_loss=stats.val_loss,
            prev_val_acc=stats.val_acc,
            best_val_loss=stats.val_loss,
        )
        self.run_id = f"{self.name}/{self.config.split}/{task_seed}"
        self._cache_episode_constants(shape)
        self._obs = self._observe()
        return self._obs

    def step(self, action: np.ndarray) -> StepResult:
        ep = self._require_live()
        op, slot, bp = map(int, np.asarray(action).ravel()[:3].tolist())
        if not self._allowed_now(op, slot, bp):
            raise ValueError(f"action {OPS[op] if 0 <= op < NUM_OPS else op}({slot}, {bp}) is masked out")
        self._apply(ep, op, slot, bp)
        self._ramp_alphas(ep)
        alphas = [s.alpha for s in ep.slots]
        trains = [s.stage in lc.LEARNING for s in ep.slots]
        held = self.added_params()
        stats = self.backend.train_epoch(self.lr, alphas, trains)
        rent = self.config.rent_rate * held / ep.shape.base_params
        reward = (stats.val_acc - ep.stats.val_acc) - rent
        ep.rent_total += rent
        ep.prev_val_loss, ep.prev_val_acc = ep.stats.val_loss, ep.stats.val_acc
        ep.stats = stats
        if stats.val_loss < ep.best_val_loss * 0.995:
            ep.best_val_loss, ep.plateau = stats.val_loss, 0
        else:
            ep.plateau += 1
        ep.epoch += 1
        self._tick(ep)
        ep.done = ep.epoch >= self.config.epoch_budget
        self._obs = self._observe()
        # Small on purpose (the actor hot path); controllers read the full view from env.info().
        info = {
            "epoch": ep.epoch,
            "val_acc": stats.val_acc,
            "rent": rent,
            "rent_total": ep.rent_total,
            "initial_acc": ep.initial_acc,
            "added_params": held,
        }
        return StepResult(self._obs, float(reward), ep.done, False, info)

    # ------------------------------------------------------------------ queries

    @property
    def lr(self) -> float:
        ep = self._require_episode()
        return ep.shape.initial_lr * 2.0**ep.lr_step

    def added_params(self) -> int:
        ep = self._require_episode()
        return sum(s.params for s in ep.slots if s.stage in lc.HOLDS_PARAMETERS)

    def blueprint_cost(self, slot: int, bp: int) -> int:
        """Parameters blueprint ``bp`` adds at ``slot`` (seeds read the slot's layer input)."""
        self._require_episode()
        return self._costs[slot][bp]

    def budget_left(self) -> int:
        self._require_episode()
        return self._budget_total - self.added_params()

    def can_advance(self, slot: SeedSlot) -> bool:
        target = lc.advance_target(slot.stage)
        if target is None:
            return False
        if slot.stage == Stage.BLENDING:
            return slot.alpha >= 1.0  # the ramp must finish before probation
        if slot.stage == Stage.PROBATIONARY:
            return slot.epochs_in_stage >= self.config.probation_epochs
        return True

    def is_allowed(self, op: int, slot: int, bp: int) -> bool:
        if not (0 <= op < NUM_OPS and 0 <= slot < self.num_slots and 0 <= bp < self.num_blueprints):
            return False
        return bool(self.action_mask()[(op * self.num_slots + slot) * self.num_blueprints + bp])

    def _allowed_now(self, op: int, slot: int, bp: int) -> bool:
        # The mask of the observation the action answers (computed once per step).
        if self._obs is None or not (
            0 <= op < NUM_OPS and 0 <= slot < self.num_slots and 0 <= bp < self.num_blueprints
        ):
            return False
        return bool(self._obs.action_mask[(op * self.num_slots + slot) * self.num_blueprints + bp])

    def action_mask(self, budget_left: int | None = None) -> np.ndarray:
        ep = self._require_episode()
        n_s, n_b = self.num_slots, self.num_blueprints
        allowed = [0]  # WAIT at (0, 0)
        if not ep.done:
            left = self.budget_left() if budget_left is None else budget_left
            for i, s in enumerate(ep.slots):
                if s.stage == Stage.DORMANT:
                    costs = self._costs[i]
                    allowed.extend((OP_GERMINATE * n_s + i) * n_b + b for b in range(n_b) if costs[b] <= left)
                if self.can_advance(s):
                    allowed.append((OP_ADVANCE * n_s + i) * n_b)
                if s.stage in lc.CULLABLE:
                    allowed.append((OP_CULL * n_s + i) * n_b)
            if ep.lr_step < self.config.lr_steps:
                allowed.append(OP_LR_UP * n_s * n_b)
            if ep.lr_step > -self.config.lr_steps:
                allowed.append(OP_LR_DOWN * n_s * n_b)
        mask = np.zeros(NUM_OPS * n_s * n_b, dtype=np.bool_)
        mask[allowed] = True
        return mask

    def info(self) -> dict[str, Any]:
        """Plain-Python view of the current state (what the baseline controllers read)."""
        ep = self._require_episode()
        st = ep.stats
        return {
            "epoch": ep.epoch,
            "epoch_budget": self.config.epoch_budget,
            "val_acc": st.val_acc,
            "val_loss": st.val_loss,
            "train_loss": st.train_loss,
            "prev_val_acc": ep.prev_val_acc,
            "initial_acc": ep.initial_acc,
            "lr": self.lr,
            "lr_step": ep.lr_step,
            "lr_steps": self.config.lr_steps,
            "plateau": ep.plateau,
            "added_params": self.added_params(),
            "base_params": ep.shape.base_params,
            "budget_left": self.budget_left(),
            "rent_total": ep.rent_total,
            "num_slots": self.num_slots,
            "num_blueprints": self.num_blueprints,
            "blueprint_ids": [b.blueprint_id for b in self.blueprints],
            "blueprint_costs": [list(row) for row in self._costs],  # [slot][blueprint]
            "slots": [
                {
                    "stage": s.stage,
                    "blueprint": s.blueprint,
                    "alpha": s.alpha,
                    "epochs_in_stage": s.epochs_in_stage,
                    "acc_delta": (st.val_acc - s.acc_at_germination) if s.blueprint >= 0 else 0.0,
                    "blend_gain": float(st.seed_blend_gain[i]),
                    "pressure": float(st.slot_pressure[i]),
                }
                for i, s in enumerate(ep.slots)
            ],
        }

    @property
    def slots(self) -> list[SeedSlot]:
        return self._require_episode().slots

    # ------------------------------------------------------------------ Leyline views

    def state_packet(self, include_graph: bool = True) -> pb.SystemStatePacket:
        ep = self._require_episode()
        st = ep.stats
        pkt = pb.SystemStatePacket(
            version=SCHEMA_VERSION,
            current_epoch=ep.epoch,
            validation_accuracy=st.val_acc,
            validation_loss=st.val_loss,
            train_loss=st.train_loss,
            timestamp_ns=time.time_ns(),
            training_run_id=self.run_id,
            host_parameter_count=ep.shape.base_params + self.added_params(),
            hardware_context=pb.HardwareContext(device_type="cpu", device_count=1),
        )
        pkt.training_metrics.update(
            {
                "loss_variance": st.loss_variance,
                "gradient_norm": st.grad_norm,
                "learning_rate": self.lr,
                "plateau_epochs": float(ep.plateau),
                "rent_total": ep.rent_total,
            }
        )
        for i, s in enumerate(ep.slots):
            pkt.seed_states.add(
                slot_index=i,
                stage=s.stage,  # type: ignore[arg-type]
                blueprint_id=self.blueprints[s.blueprint].blueprint_id if s.blueprint >= 0 else "",
                alpha=s.alpha,
                epochs_in_stage=s.epochs_in_stage,
                gradient_norm=float(st.seed_grad_rms[i]),
                parameter_count=s.params,
                accuracy_delta=(st.val_acc - s.acc_at_germination) if s.blueprint >= 0 else 0.0,
            )
        if include_graph and self._obs is not None:
            pkt.graph.CopyFrom(graphs_to_proto(self._obs.graph, self.schema.name))
            pkt.action_mask = pack_mask(self._obs.action_mask)
        return pkt

    def command_for(self, action: np.ndarray, log_prob: float = 0.0, policy_version: int = 0) -> pb.AdaptationCommand:
        return command_from_action(
            action,
            run_id=self.run_id,
            epoch=self._require_episode().epoch,
            blueprint_ids=[b.blueprint_id for b in self.blueprints],
            log_prob=log_prob,
            policy_version=policy_version,
        )

    # ------------------------------------------------------------------ internals

    def _require_episode(self) -> _Episode:
        if self._ep is None:
            raise RuntimeError("call reset() first")
        return self._ep

    def _require_live(self) -> _Episode:
        ep = self._require_episode()
        if ep.done:
            raise RuntimeError("step() after the episode ended; call reset()")
        return ep

    def _set_stage(self, slot: SeedSlot, dst: int, cause: lc.Cause) -> None:
        slot.stage = lc.transition(slot.stage, dst, cause)
        slot.epochs_in_stage = 0

    def _apply(self, ep: _Episode, op: int, i: int, bp: int) -> None:
        if op == OP_GERMINATE:
            s = ep.slots[i]
            self._set_stage(s, Stage.GERMINATED, lc.Cause.GERMINATE)
            s.blueprint, s.alpha = bp, 0.0
            s.params = self.blueprint_cost(i, bp)
            s.acc_at_germination = ep.stats.val_acc
            self.backend.plant(i, self.blueprints[bp])
        elif op == OP_ADVANCE:
            s = ep.slots[i]
            target = lc.advance_target(s.stage)
            assert target is not None  # guaranteed by the mask
            self._set_stage(s, target, lc.Cause.ADVANCE)
            if target == Stage.BLENDING:
                s.alpha = 1.0 / self.config.blend_epochs
            elif target in (Stage.PROBATIONARY, Stage.FOSSILIZED):
                s.alpha = 1.0
        elif op == OP_CULL:
            s = ep.slots[i]
            self._set_stage(s, Stage.CULLED, lc.Cause.CULL)
            s.alpha, s.params = 0.0, 0
            self.backend.remove(i)
        elif op == OP_LR_UP:
            ep.lr_step += 1
        elif op == OP_LR_DOWN:
            ep.lr_step -= 1

    def _ramp_alphas(self, ep: _Episode) -> None:
        for s in ep.slots:
            if s.stage == Stage.BLENDING and s.epochs_in_stage > 0:
                s.alpha = min(1.0, s.alpha + 1.0 / self.config.blend_epochs)

    def _tick(self, ep: _Episode) -> None:
        """End of epoch: the clock-driven transitions, then age every slot by one epoch."""
        for s in ep.slots:
            if s.stage == Stage.CULLED and s.epochs_in_stage >= 1:
                self._set_stage(s, Stage.EMBARGOED, lc.Cause.AUTO)
                s.embargo_left = self.config.embargo_epochs
                s.blueprint = -1
            elif s.stage == Stage.EMBARGOED:
                s.embargo_left -= 1
                if s.embargo_left <= 0:
                    self._set_stage(s, Stage.RESETTING, lc.Cause.AUTO)
            elif s.stage == Stage.RESETTING and s.epochs_in_stage >= 1:
                self._set_stage(s, Stage.DORMANT, lc.Cause.AUTO)
            s.epochs_in_stage += 1
        # Note: EMBARGOED is entered with epochs_in_stage 0 and aged here; the embargo counter
        # above is what times it out.

    def _cache_episode_constants(self, shape: HostShape) -> None:
        """Everything the observation needs that is fixed for the episode, computed once."""
        base = float(shape.base_params)
        self._costs = [
            [bp.param_count(shape.layer_fan_in[i], shape.layer_fan_out[i]) for bp in self.blueprints]
            for i in range(self.num_slots)
        ]
        self._costs_arr = np.array(self._costs)  # [S, B]
        self._slot_input_width = [math.log2(shape.layer_fan_in[i]) / 8.0 for i in range(self.num_slots)]
        self._budget_total = int(self.config.param_budget * shape.base_params)
        n_layers = self.num_slots + 1
        fan_in = np.asarray(shape.layer_fan_in, dtype=np.float64)
        fan_out = np.asarray(shape.layer_fan_out, dtype=np.float64)
        layer = np.zeros((n_layers, len(LAYER_FEATURES)), dtype=np.float32)
        layer[:, 0] = np.arange(n_layers) / (n_layers - 1)
        layer[:, 1] = np.log2(fan_in) / 8.0
        layer[:, 2] = np.log2(fan_out) / 8.0
        layer[-1, 3] = 1.0
        layer[:, 4] = (fan_in * fan_out + fan_out) / base
        self._layer_static = layer
        bpf = np.zeros((self.num_blueprints, len(BLUEPRINT_FEATURES)), dtype=np.float32)
        for b, bp in enumerate(self.blueprints):
            bpf[b, 0] = self._costs_arr[:, b].min() / base
            bpf[b, 1] = self._costs_arr[:, b].max() / base
            bpf[b, 3] = bp.hidden_multiplier / 8.0
            bpf[b, 4] = bp.rank / 8.0
            bpf[b, 5 + KINDS.index(bp.kind)] = 1.0
        self._blueprint_static = bpf
        self._slot_positions = [i / max(self.num_slots - 1, 1) for i in range(self.num_slots)]
        one = np.ones(1, dtype=np.int32)
        self._node_counts = {
            "global": one,
            "layer": np.full(1, n_layers, dtype=np.int32),
            "slot": np.full(1, self.num_slots, dtype=np.int32),
            "blueprint": np.full(1, self.num_blueprints, dtype=np.int32),
        }
        edges = self._static_edges
        self._static_edge_counts = {k: np.full(1, v.shape[1], dtype=np.int32) for k, v in edges.items()}
        for arr in [*self._node_counts.values(), *self._static_edge_counts.values(), *edges.values()]:
            arr.flags.writeable = False  # shared by every observation of the env: nobody may mutate them

    def _planted_edges(
        self, src: tuple[int, ...], dst: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The planted_in / grows edges and counts; few distinct layouts occur, so they are cached."""
        key = (src, dst)
        found = self._planted_cache.get(key)
        if found is None:
            planted = np.array([src, dst], dtype=np.int32).reshape(2, -1)
            count = np.full(1, len(src), dtype=np.int32)
            found = (planted, np.ascontiguousarray(planted[::-1]), count, count.copy())
            for arr in found:
                arr.flags.writeable = False
            self._planted_cache[key] = found
        return found

    def _observe(self) -> Observation:
        ep = self._require_episode()
        st, shape, cfg = ep.stats, ep.shape, self.config
        base = float(shape.base_params)
        log_c = math.log(max(shape.num_classes, 2))
        budget = cfg.epoch_budget
        added = self.added_params()
        left = self._budget_total - added
        n_live = sum(1 for s in ep.slots if s.stage in lc.HOLDS_PARAMETERS)
        g = np.array(
            [
                ep.epoch / budget,
                (budget - ep.epoch) / budget,
                st.val_acc,
                st.val_loss / log_c,
                st.train_loss / log_c,
                10.0 * (st.val_acc - ep.prev_val_acc),
                10.0 * (st.val_loss - ep.prev_val_loss) / log_c,
                ep.plateau / 10.0,
                math.log1p(100.0 * st.loss_variance),
                math.log1p(st.grad_norm),
                ep.lr_step / max(cfg.lr_steps, 1),
                added / base,
                max(left, 0) / base,
                n_live / self.num_slots,
                1.0 / shape.num_classes,
            ],
            dtype=np.float32,
        ).reshape(1, -1)

        layer = self._layer_static.copy()
        layer[:, 5:8] = np.array([st.layer_weight_rms, np.log1p(1000.0 * st.layer_grad_rms), st.layer_dead_fraction]).T

        # Slot rows as plain lists, converted once: numpy item assignment is slow per element.
        # Plain Python over S x B booleans: cheaper than numpy reductions at this size.
        fits = [[cost <= left for cost in row] for row in self._costs]  # [S][B]
        affordable = [sum(row) / self.num_blueprints for row in fits]
        seed_grad = st.seed_grad_rms.tolist()
        blend_gain = st.seed_blend_gain.tolist()
        pressure = st.slot_pressure.tolist()
        embargo_len = max(cfg.embargo_epochs, 1)
        rows = []
        planted_src: list[int] = []
        planted_dst: list[int] = []
        for i, s in enumerate(ep.slots):
            one_hot = [0.0] * len(SLOT_STAGES)
            one_hot[s.stage - 1] = 1.0
            seeded = s.blueprint >= 0
            if seeded and s.stage in lc.HOLDS_PARAMETERS:  # a culled seed's module is gone
                planted_src.append(s.blueprint)
                planted_dst.append(i)
            rows.append(
                [
                    self._slot_positions[i],
                    *one_hot,
                    s.alpha,
                    s.epochs_in_stage / 10.0,
                    s.params / base,
                    10.0 * (st.val_acc - s.acc_at_germination) if seeded else 0.0,
                    math.log1p(1000.0 * seed_grad[i]),
                    min(max(blend_gain[i], -1.0), 1.0),
                    math.log1p(1000.0 * pressure[i]),
                    s.embargo_left / embargo_len,
                    1.0 if s.stage == Stage.DORMANT else 0.0,
                    self._slot_input_width[i],
                    affordable[i],
                ]
            )
        slot = np.array(rows, dtype=np.float32)

        bpf = self._blueprint_static.copy()
        bpf[:, 2] = [sum(col) / self.num_slots for col in zip(*fits, strict=True)]
        for b in planted_src:
            bpf[b, 7] += 1.0 / self.num_slots

        edges = dict(self._static_edges)
        edge_counts = dict(self._static_edge_counts)
        edges[_PLANTED], edges[_GROWS], edge_counts[_PLANTED], edge_counts[_GROWS] = self._planted_edges(
            tuple(planted_src), tuple(planted_dst)
        )
        graph = PackedGraphs(
            node_features={"global": g, "layer": layer, "slot": slot, "blueprint": bpf},
            node_counts=dict(self._node_counts),
            edge_index=edges,
            edge_counts=edge_counts,
        )
        return Observation(graph=graph, action_mask=self.action_mask(left))
