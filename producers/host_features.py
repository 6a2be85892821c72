"""The observation graph of the host envs: node features per type and the edges, from the episode state.

Node types, relations and the meaning of every feature column are the contract
in contracts/host_schema.py (GLOBAL_FEATURES, LAYER_FEATURES, SLOT_FEATURES,
BLUEPRINT_FEATURES); the scales below bring each raw signal to roughly unit
range.  This runs on every env step (the actor's hot path): what is fixed per
env or per episode is computed once, and the per-step arrays are built the
cheapest way for their size (see the comments in `graph`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tamiyo.contracts.graph import PackedGraphs, RelationKey
from tamiyo.contracts.host_schema import (
    BLUEPRINT_FEATURES,
    LAYER_FEATURES,
    SLOT_STAGES,
    static_edges,
)
from tamiyo.producers import lifecycle as lc
from tamiyo.producers.blueprints import Blueprint
from tamiyo.producers.host_backend import HostConfig, HostShape
from tamiyo.producers.host_episode import Episode
from tamiyo.producers.seed_slots import Stage

# Feature scales (the meanings are in contracts/host_schema.py).
LOG2_WIDTH_SCALE = 8.0  # log2 of widths up to 256 maps into [0, 1]
BLUEPRINT_SIZE_SCALE = 8.0  # hidden width multipliers and adapter ranks up to 8 map into [0, 1]
DELTA_GAIN = 10.0  # per-epoch accuracy / normalized-loss changes are ~0.01-0.1: x10 brings them near 1
EPOCH_COUNT_SCALE = 10.0  # epoch counts (plateau, epochs in stage): 10 epochs map to 1
GRAD_LOG_GAIN = 1000.0  # RMS gradients are small (~1e-3): log1p(1000 x) lifts them to order 1, tames outliers
LOSS_VARIANCE_GAIN = 100.0  # minibatch loss variances are small (~1e-2): log1p(100 x) lifts them to order 1
BLEND_GAIN_CLIP = 1.0  # -dL/dalpha / loss is unbounded (tiny losses, diverged runs): clip to [-1, 1]
MIN_LOG_CLASSES = 2  # losses are divided by log(num_classes); log(1) = 0 would divide by zero

PLANTED: RelationKey = ("blueprint", "planted_in", "slot")
GROWS: RelationKey = ("slot", "grows", "blueprint")


def _columns(features: tuple[tuple[str, str], ...]) -> dict[str, int]:
    return {name: i for i, (name, _) in enumerate(features)}


_LAYER = _columns(LAYER_FEATURES)
_BLUEPRINT = _columns(BLUEPRINT_FEATURES)
# The per-step layer columns, written as one block: they must stay adjacent in the schema.
_LAYER_MEASURED = slice(_LAYER["weight_rms"], _LAYER["dead_fraction"] + 1)
assert [n for n, _ in LAYER_FEATURES[_LAYER_MEASURED]] == ["weight_rms", "grad_rms", "dead_fraction"]
_BP_AFFORDABLE = _BLUEPRINT["affordable_slots"]
_BP_IN_USE = _BLUEPRINT["in_use"]
_FIRST_STAGE = SLOT_STAGES[0]  # the stage whose one-hot column comes first

# planted_in edges, grows edges, and their counts
PlantedEdges = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _read_only(*arrays: np.ndarray) -> None:
    for arr in arrays:
        arr.flags.writeable = False  # shared by many observations: nobody may mutate them


class HostFeatures:
    """Builds the observation graph of one env; ``begin_episode`` once per task, ``graph`` per step."""

    def __init__(self, config: HostConfig, blueprints: Sequence[Blueprint]) -> None:
        self.config = config
        self.blueprints = blueprints
        s, b = config.num_slots, len(blueprints)
        self.num_slots, self.num_blueprints = s, b
        self.static_edges = static_edges(s, b)
        self._planted_cache: dict[tuple[tuple[int, ...], tuple[int, ...]], PlantedEdges] = {}
        self._slot_positions = [i / max(s - 1, 1) for i in range(s)]
        self._node_counts = {
            "global": np.ones(1, dtype=np.int32),
            "layer": np.full(1, s + 1, dtype=np.int32),
            "slot": np.full(1, s, dtype=np.int32),
            "blueprint": np.full(1, b, dtype=np.int32),
        }
        self._static_edge_counts = {k: np.full(1, v.shape[1], dtype=np.int32) for k, v in self.static_edges.items()}
        _read_only(*self._node_counts.values(), *self._static_edge_counts.values(), *self.static_edges.values())

    def begin_episode(self, shape: HostShape, costs: list[list[int]]) -> None:
        """The features fixed for the episode (``costs``: [slot][blueprint] seed parameters)."""
        base = float(shape.base_params)
        self._costs = costs
        costs_arr = np.array(costs)  # [S, B]
        self._slot_input_width = [math.log2(shape.layer_fan_in[i]) / LOG2_WIDTH_SCALE for i in range(self.num_slots)]
        n_layers = self.num_slots + 1
        fan_in = np.asarray(shape.layer_fan_in, dtype=np.float64)
        fan_out = np.asarray(shape.layer_fan_out, dtype=np.float64)
        layer = np.zeros((n_layers, len(LAYER_FEATURES)), dtype=np.float32)
        layer[:, _LAYER["position"]] = np.arange(n_layers) / (n_layers - 1)
        layer[:, _LAYER["fan_in"]] = np.log2(fan_in) / LOG2_WIDTH_SCALE
        layer[:, _LAYER["fan_out"]] = np.log2(fan_out) / LOG2_WIDTH_SCALE
        layer[-1, _LAYER["is_output"]] = 1.0
        layer[:, _LAYER["param_share"]] = (fan_in * fan_out + fan_out) / base  # weights + biases
        self._layer_static = layer
        bpf = np.zeros((self.num_blueprints, len(BLUEPRINT_FEATURES)), dtype=np.float32)
        for b, bp in enumerate(self.blueprints):
            bpf[b, _BLUEPRINT["cost_min"]] = costs_arr[:, b].min() / base
            bpf[b, _BLUEPRINT["cost_max"]] = costs_arr[:, b].max() / base
            bpf[b, _BLUEPRINT["width_multiplier"]] = bp.hidden_multiplier / BLUEPRINT_SIZE_SCALE
            bpf[b, _BLUEPRINT["rank"]] = bp.rank / BLUEPRINT_SIZE_SCALE
            bpf[b, _BLUEPRINT[f"kind_{bp.kind}"]] = 1.0
        self._blueprint_static = bpf

    @property
    def episode_statics(self) -> tuple[np.ndarray, np.ndarray, list[float]]:
        """What `begin_episode` fixed: layer features [L, F], blueprint features [B, F], slot input widths [S]
        (the vector env precomputes them per task shape from here)."""
        return self._layer_static, self._blueprint_static, self._slot_input_width

    def planted_edges(self, src: tuple[int, ...], dst: tuple[int, ...]) -> PlantedEdges:
        """planted_in and grows edges, then their counts; few distinct layouts occur, so they are cached."""
        key = (src, dst)
        found = self._planted_cache.get(key)
        if found is None:
            planted = np.array([src, dst], dtype=np.int32).reshape(2, -1)
            count = np.full(1, len(src), dtype=np.int32)
            found = (planted, np.ascontiguousarray(planted[::-1]), count, count.copy())
            _read_only(*found)
            self._planted_cache[key] = found
        return found

    def graph(self, ep: Episode, added: int, left: int) -> PackedGraphs:
        """The graph of the current state; ``added``: seed parameters held, ``left``: budget left."""
        st, shape, cfg = ep.stats, ep.shape, self.config
        base = float(shape.base_params)
        log_c = math.log(max(shape.num_classes, MIN_LOG_CLASSES))
        budget = cfg.epoch_budget
        n_live = sum(1 for s in ep.slots if s.stage in lc.HOLDS_PARAMETERS)
        g = np.array(
            [  # GLOBAL_FEATURES, in order
                ep.epoch / budget,
                (budget - ep.epoch) / budget,
                st.val_acc,
                st.val_loss / log_c,
                st.train_loss / log_c,
                DELTA_GAIN * (st.val_acc - ep.prev_val_acc),
                DELTA_GAIN * (st.val_loss - ep.prev_val_loss) / log_c,
                ep.plateau / EPOCH_COUNT_SCALE,
                math.log1p(LOSS_VARIANCE_GAIN * st.loss_variance),
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
        layer[:, _LAYER_MEASURED] = np.array(
            [st.layer_weight_rms, np.log1p(GRAD_LOG_GAIN * st.layer_grad_rms), st.layer_dead_fraction]
        ).T

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
            one_hot[s.stage - _FIRST_STAGE] = 1.0
            seeded = s.blueprint >= 0
            if seeded and s.stage in lc.HOLDS_PARAMETERS:  # a culled seed's module is gone
                planted_src.append(s.blueprint)
                planted_dst.append(i)
            rows.append(
                [  # SLOT_FEATURES, in order
                    self._slot_positions[i],
                    *one_hot,
                    s.alpha,
                    s.epochs_in_stage / EPOCH_COUNT_SCALE,
                    s.params / base,
                    DELTA_GAIN * (st.val_acc - s.acc_at_germination) if seeded else 0.0,
                    math.log1p(GRAD_LOG_GAIN * seed_grad[i]),
                    min(max(blend_gain[i], -BLEND_GAIN_CLIP), BLEND_GAIN_CLIP),
                    math.log1p(GRAD_LOG_GAIN * pressure[i]),
                    s.embargo_left / embargo_len,
                    1.0 if s.stage == Stage.DORMANT else 0.0,
                    self._slot_input_width[i],
                    affordable[i],
                ]
            )
        slot = np.array(rows, dtype=np.float32)

        bpf = self._blueprint_static.copy()
        bpf[:, _BP_AFFORDABLE] = [sum(col) / self.num_slots for col in zip(*fits, strict=True)]
        for b in planted_src:
            bpf[b, _BP_IN_USE] += 1.0 / self.num_slots

        edges = dict(self.static_edges)
        edge_counts = dict(self._static_edge_counts)
        edges[PLANTED], edges[GROWS], edge_counts[PLANTED], edge_counts[GROWS] = self.planted_edges(
            tuple(planted_src), tuple(planted_dst)
        )
        return PackedGraphs(
            node_features={"global": g, "layer": layer, "slot": slot, "blueprint": bpf},
            node_counts=dict(self._node_counts),
            edge_index=edges,
            edge_counts=edge_counts,
        )
