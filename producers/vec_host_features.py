"""The observations of N host envs at once: the state arrays, the joint action masks and one `PackedGraphs`.

The array form of host_features.py (`HostFeatures.graph`) and host_masks.py (`joint_action_mask`) over a
`VecHostState` (env i is row i), graph by graph identical to theirs (tests/producers/test_vec_host_sim.py):
the same feature columns (named from contracts/host_schema.py), the same scales (host_features.py's
constants), float64 math in the scalar code's order and one cast to float32 at the end, and the
transcendentals the scalar code takes from Python's ``math`` taken from ``math`` too (`pymap`), so the
bits agree on every CPU (numpy's SIMD exp / log1p may differ from libm by an ulp on some).
What is fixed per task shape (layer and blueprint statics, seed costs) is `HostFeatures.begin_episode`'s
own output, computed once per possible shape; what is fixed for N (the static edges, node counts) once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.host_schema import (
    BLUEPRINT_FEATURES,
    GLOBAL_FEATURES,
    LAYER_FEATURES,
    NUM_OPS,
    OP_ADVANCE,
    OP_CULL,
    OP_GERMINATE,
    OP_LR_DOWN,
    OP_LR_UP,
    OP_WAIT,
    SLOT_FEATURES,
    SLOT_STAGES,
    static_edges,
)
from tamiyo.producers import lifecycle as lc
from tamiyo.producers import seed_slots
from tamiyo.producers.blueprints import Blueprint
from tamiyo.producers.host_backend import HostConfig, HostShape
from tamiyo.producers.host_features import (
    BLEND_GAIN_CLIP,
    DELTA_GAIN,
    EPOCH_COUNT_SCALE,
    GRAD_LOG_GAIN,
    GROWS,
    LOSS_VARIANCE_GAIN,
    MIN_LOG_CLASSES,
    PLANTED,
    HostFeatures,
)
from tamiyo.producers.seed_slots import Stage


def pymap(fn: Callable[[float], float], x: np.ndarray) -> np.ndarray:
    """``fn`` (a ``math`` function) elementwise: the scalar env's exact float64 results, at ~0.1 µs a value."""
    return np.fromiter(map(fn, x.ravel().tolist()), np.float64, x.size).reshape(x.shape)


def _stage_set(stages: Sequence[int] | frozenset[int]) -> np.ndarray:
    table = np.zeros(max(lc.ALL_STAGES) + 1, dtype=np.bool_)
    table[list(stages)] = True
    return table


# Lifecycle sets as lookup tables indexed by stage (from lifecycle.py's, so they cannot drift).
HOLDS = _stage_set(lc.HOLDS_PARAMETERS)
CULLABLE = _stage_set(lc.CULLABLE)
LEARNING = _stage_set(lc.LEARNING)
ADVANCE_TO = np.full(max(lc.ALL_STAGES) + 1, -1, dtype=np.int64)
ADVANCE_TO[list(lc.ADVANCE_TARGET)] = list(lc.ADVANCE_TARGET.values())

_G = {name: i for i, (name, _) in enumerate(GLOBAL_FEATURES)}
_L = {name: i for i, (name, _) in enumerate(LAYER_FEATURES)}
_S = {name: i for i, (name, _) in enumerate(SLOT_FEATURES)}
_B = {name: i for i, (name, _) in enumerate(BLUEPRINT_FEATURES)}
_STAGE_COL = _S[f"stage_{SLOT_STAGES[0]}"] - SLOT_STAGES[0]  # column of stage x: _STAGE_COL + x


@dataclass
class VecHostState:
    """Everything N host-sim envs are, one row per env ([N] or [N, S] or [N, S, B])."""

    # the task (fixed per episode); `shape` indexes VecHostFeatures' per-shape tables
    shape: np.ndarray  # int
    chance: np.ndarray
    top: np.ndarray
    base_capacity: np.ndarray
    lr_opt: np.ndarray  # int: the LR step the task likes best
    slot_gain: np.ndarray  # [N, S]
    base: np.ndarray  # int: host base parameters
    budget_total: np.ndarray  # int
    costs: np.ndarray  # int [N, S, B]
    log_k: np.ndarray  # math.log(num classes)
    log_c: np.ndarray  # math.log(max(num classes, MIN_LOG_CLASSES))
    # the episode
    epoch: np.ndarray  # int
    lr_step: np.ndarray  # int
    plateau: np.ndarray  # int
    acc: np.ndarray  # the surrogate's true accuracy
    prev_val_acc: np.ndarray
    prev_val_loss: np.ndarray
    best_val_loss: np.ndarray
    # the latest measurement (EpochStats; the layer rows are one value per env)
    val_acc: np.ndarray
    val_loss: np.ndarray
    train_loss: np.ndarray
    loss_variance: np.ndarray
    grad_norm: np.ndarray
    weight_rms: np.ndarray
    layer_grad_rms: np.ndarray
    slot_pressure: np.ndarray  # [N, S]
    seed_grad_rms: np.ndarray  # [N, S]
    seed_blend_gain: np.ndarray  # [N, S]
    # the seeds: the surrogate's and the slots' (SeedSlot fields), [N, S]
    quality: np.ndarray
    readiness: np.ndarray
    prev_alpha: np.ndarray
    stage: np.ndarray  # int
    blueprint: np.ndarray  # int, -1 without a seed
    alpha: np.ndarray
    epochs_in_stage: np.ndarray  # int
    params: np.ndarray  # int
    acc_at_germination: np.ndarray
    embargo_left: np.ndarray  # int

    @classmethod
    def zeros(cls, n: int, s: int, b: int) -> VecHostState:
        ints = {"shape", "lr_opt", "base", "budget_total", "costs", "epoch", "lr_step", "plateau", "stage",
                "blueprint", "epochs_in_stage", "params", "embargo_left"}  # fmt: skip
        per_slot = {"slot_gain", "slot_pressure", "seed_grad_rms", "seed_blend_gain", "quality", "readiness",
                    "prev_alpha", "stage", "blueprint", "alpha", "epochs_in_stage", "params", "acc_at_germination",
                    "embargo_left"}  # fmt: skip
        arrays = {}
        for f in fields(cls):
            shape = (n, s, b) if f.name == "costs" else (n, s) if f.name in per_slot else (n,)
            arrays[f.name] = np.zeros(shape, dtype=np.int64 if f.name in ints else np.float64)
        return cls(**arrays)


class VecHostFeatures:
    """Observations of N envs; ``shapes``: every task shape an env may draw (statics are built per shape)."""

    def __init__(
        self, config: HostConfig, blueprints: Sequence[Blueprint], num_envs: int, shapes: Sequence[HostShape]
    ) -> None:
        self.config = config
        n, s, b = num_envs, config.num_slots, len(blueprints)
        self.num_envs, self.num_slots, self.num_blueprints = n, s, b
        # Per shape, from the scalar code itself: HostFeatures' episode statics, the seed costs, the budget.
        scalar = HostFeatures(config, blueprints)
        layer, bpf, width, costs = [], [], [], []
        for shape in shapes:
            cost = seed_slots.seed_costs(shape, blueprints, s)
            scalar.begin_episode(shape, cost)
            # Private, but the point is to reuse them (a public accessor would be nicer).
            layer_static, blueprint_static, input_width = scalar.episode_statics
            layer.append(layer_static)
            bpf.append(blueprint_static)
            width.append(input_width)
            costs.append(cost)
        self.layer_static = np.stack(layer)  # [shapes, L, F] float32
        self.blueprint_static = np.stack(bpf)  # [shapes, B, F] float32
        self.input_width = np.array(width)  # [shapes, S]
        self.costs = np.array(costs, dtype=np.int64)  # [shapes, S, B]
        self.base = np.array([sh.base_params for sh in shapes], dtype=np.int64)
        self.budget_total = np.array([int(config.param_budget * sh.base_params) for sh in shapes], dtype=np.int64)
        self.log_c = np.array([math.log(max(sh.num_classes, MIN_LOG_CLASSES)) for sh in shapes])
        # blueprint "in_use" after c planted seeds: c float32 additions of 1/S, as HostFeatures adds them.
        in_use = np.zeros((s + 1, 1), dtype=np.float32)
        for c in range(1, s + 1):
            in_use[c] = in_use[c - 1]
            in_use[c, 0] += 1.0 / s
        self._in_use = in_use[:, 0]
        self._slot_position = np.array([i / max(s - 1, 1) for i in range(s)])
        self._env_index, self._slot_index = np.indices((n, s))
        # What is the same for every observation of N graphs: shared, so read-only.
        edges = static_edges(s, b)
        self._edges = {k: np.ascontiguousarray(np.tile(v, (1, n))) for k, v in edges.items()}
        self._edge_counts = {k: np.full(n, v.shape[1], dtype=np.int32) for k, v in edges.items()}
        self._node_counts = {
            t: np.full(n, c, dtype=np.int32)
            for t, c in (("global", 1), ("layer", s + 1), ("slot", s), ("blueprint", b))
        }
        for arr in (*self._edges.values(), *self._edge_counts.values(), *self._node_counts.values()):
            arr.flags.writeable = False

    def observe(self, st: VecHostState) -> tuple[PackedGraphs, np.ndarray]:
        """The N graphs (one `PackedGraphs`) and the joint action masks bool [N, NUM_OPS * S * B]."""
        cfg, n, s, b = self.config, self.num_envs, self.num_slots, self.num_blueprints
        holds = HOLDS[st.stage]  # [N, S]
        added = (st.params * holds).sum(axis=1)
        left = st.budget_total - added
        fits = st.costs <= left[:, None, None]  # [N, S, B]
        fits_count = fits.astype(np.float64)  # summed with einsum: numpy's bool reductions are slow at this size
        planted = holds & (st.blueprint >= 0)  # a culled seed's module is gone
        base = st.base.astype(np.float64)
        # All log1p inputs of the step in one pass through math.log1p: [N, 2 + 2S].
        logs = pymap(
            math.log1p,
            np.concatenate(
                [
                    (LOSS_VARIANCE_GAIN * st.loss_variance)[:, None],
                    st.grad_norm[:, None],
                    GRAD_LOG_GAIN * st.seed_grad_rms,
                    GRAD_LOG_GAIN * st.slot_pressure,
                ],
                axis=1,
            ),
        )

        budget = cfg.epoch_budget
        g = np.zeros((n, len(GLOBAL_FEATURES)), dtype=np.float32)
        g[:, _G["progress"]] = st.epoch / budget
        g[:, _G["remaining"]] = (budget - st.epoch) / budget
        g[:, _G["val_acc"]] = st.val_acc
        g[:, _G["val_loss"]] = st.val_loss / st.log_c
        g[:, _G["train_loss"]] = st.train_loss / st.log_c
        g[:, _G["val_acc_delta"]] = DELTA_GAIN * (st.val_acc - st.prev_val_acc)
        g[:, _G["val_loss_delta"]] = DELTA_GAIN * (st.val_loss - st.prev_val_loss) / st.log_c
        g[:, _G["plateau"]] = st.plateau / EPOCH_COUNT_SCALE
        g[:, _G["loss_variance"]] = logs[:, 0]
        g[:, _G["grad_norm"]] = logs[:, 1]
        g[:, _G["lr_step"]] = st.lr_step / max(cfg.lr_steps, 1)
        g[:, _G["added_params"]] = added / base
        g[:, _G["budget_left"]] = np.maximum(left, 0) / base
        g[:, _G["live_seeds"]] = holds.sum(axis=1) / s
        g[:, _G["chance_acc"]] = st.chance  # 1 / num_classes

        layer = self.layer_static[st.shape]  # [N, L, F], a copy
        layer[:, :, _L["weight_rms"]] = st.weight_rms[:, None]
        layer[:, :, _L["grad_rms"]] = np.log1p(GRAD_LOG_GAIN * st.layer_grad_rms)[:, None]  # numpy, as the scalar
        layer[:, :, _L["dead_fraction"]] = 0.0

        sl = np.zeros((n, s, len(SLOT_FEATURES)), dtype=np.float32)
        sl[:, :, _S["position"]] = self._slot_position
        sl[self._env_index, self._slot_index, _STAGE_COL + st.stage] = 1.0
        sl[:, :, _S["alpha"]] = st.alpha
        sl[:, :, _S["epochs_in_stage"]] = st.epochs_in_stage / EPOCH_COUNT_SCALE
        sl[:, :, _S["seed_params"]] = st.params / base[:, None]
        seeded = st.blueprint >= 0
        sl[:, :, _S["seed_acc_delta"]] = np.where(seeded, DELTA_GAIN * (st.val_acc[:, None] - st.acc_at_germination), 0)
        sl[:, :, _S["seed_grad_norm"]] = logs[:, 2 : 2 + s]
        sl[:, :, _S["blend_gain"]] = np.minimum(np.maximum(st.seed_blend_gain, -BLEND_GAIN_CLIP), BLEND_GAIN_CLIP)
        sl[:, :, _S["pressure"]] = logs[:, 2 + s :]
        sl[:, :, _S["embargo_left"]] = st.embargo_left / max(cfg.embargo_epochs, 1)
        sl[:, :, _S["can_germinate"]] = st.stage == Stage.DORMANT
        sl[:, :, _S["input_width"]] = self.input_width[st.shape]
        sl[:, :, _S["affordable_blueprints"]] = np.einsum("nsb->ns", fits_count) / b

        bpf = self.blueprint_static[st.shape]  # [N, B, F], a copy
        bpf[:, :, _B["affordable_slots"]] = np.einsum("nsb->nb", fits_count) / s
        env_of, slot_of = np.nonzero(planted)  # env-major, slots in order: the scalar envs' edges, concatenated
        bp_of = st.blueprint[env_of, slot_of]
        per_bp = np.bincount(env_of * b + bp_of, minlength=n * b).reshape(n, b)  # planted seeds per blueprint
        bpf[:, :, _B["in_use"]] = self._in_use[per_bp]

        planted_in = np.stack([bp_of, slot_of]).astype(np.int32)
        counts = planted.sum(axis=1).astype(np.int32)
        edges = {**self._edges, PLANTED: planted_in, GROWS: np.ascontiguousarray(planted_in[::-1])}
        edge_counts = {**self._edge_counts, PLANTED: counts, GROWS: counts.copy()}
        graphs = PackedGraphs(
            node_features={
                "global": g,
                "layer": layer.reshape(n * (s + 1), -1),
                "slot": sl.reshape(n * s, -1),
                "blueprint": bpf.reshape(n * b, -1),
            },
            node_counts=dict(self._node_counts),
            edge_index=edges,
            edge_counts=edge_counts,
        )
        return graphs, self._masks(st, fits)

    def _masks(self, st: VecHostState, fits: np.ndarray) -> np.ndarray:
        """host_masks.joint_action_mask for every env (none is ever observed finished: they reset at once)."""
        cfg, n, s, b = self.config, self.num_envs, self.num_slots, self.num_blueprints
        mask = np.zeros((n, NUM_OPS, s, b), dtype=np.bool_)
        mask[:, OP_WAIT, 0, 0] = True
        mask[:, OP_GERMINATE] = (st.stage == Stage.DORMANT)[:, :, None] & fits
        # seed_slots.can_advance: a target, a finished ramp when blending, served probation when probationary.
        can_advance = (ADVANCE_TO[st.stage] >= 0) & ((st.stage != Stage.BLENDING) | (st.alpha >= 1.0))
        can_advance &= (st.stage != Stage.PROBATIONARY) | (st.epochs_in_stage >= cfg.probation_epochs)
        mask[:, OP_ADVANCE, :, 0] = can_advance
        mask[:, OP_CULL, :, 0] = CULLABLE[st.stage]
        mask[:, OP_LR_UP, 0, 0] = st.lr_step < cfg.lr_steps
        mask[:, OP_LR_DOWN, 0, 0] = st.lr_step > -cfg.lr_steps
        return mask.reshape(n, -1)
