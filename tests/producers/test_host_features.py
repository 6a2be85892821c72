"""The observation graph: every column is what contracts/host_schema.py says it is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tamiyo.contracts.host_schema import (
    BLUEPRINT_FEATURES,
    GLOBAL_FEATURES,
    LAYER_FEATURES,
    SLOT_FEATURES,
    host_schema,
)
from tamiyo.producers import host_features as hf
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.host_backend import EpochStats, HostConfig, HostShape
from tamiyo.producers.host_episode import Episode
from tamiyo.producers.host_features import PLANTED, HostFeatures
from tamiyo.producers.lifecycle import Stage
from tamiyo.producers.seed_slots import SeedSlot, seed_costs


def _col(features: tuple[tuple[str, str], ...], name: str) -> int:
    return [n for n, _ in features].index(name)


def _stats(val_acc: float = 0.5, val_loss: float = 1.0) -> EpochStats:
    return EpochStats(
        val_acc=val_acc,
        val_loss=val_loss,
        train_loss=0.9,
        loss_variance=0.01,
        grad_norm=1.5,
        layer_weight_rms=np.array([0.3, 0.4, 0.5, 0.6]),
        layer_grad_rms=np.array([0.001, 0.002, 0.003, 0.004]),
        layer_dead_fraction=np.array([0.1, 0.2, 0.3, 0.0]),
        slot_pressure=np.array([0.002, 0.0, 0.001]),
        seed_grad_rms=np.array([0.0, 0.001, 0.0]),
        seed_blend_gain=np.array([0.0, 5.0, -0.3]),
    )


SHAPE = HostShape((256, 8, 8, 8), (8, 8, 8, 4), 8, 256 * 8 + 8 + 2 * (8 * 8 + 8) + 8 * 4 + 4, 4, 0.01)
CONFIG = HostConfig(epoch_budget=20)


def _episode() -> tuple[HostFeatures, Episode]:
    features = HostFeatures(CONFIG, CATALOG)
    costs = seed_costs(SHAPE, CATALOG, 3)
    features.begin_episode(SHAPE, costs)
    ep = Episode.start(SHAPE, _stats(val_acc=0.4, val_loss=1.2), 3, costs, int(3.0 * SHAPE.base_params))
    ep.close_epoch(_stats(), held=0, rent_rate=0.0)  # one epoch: acc 0.4 -> 0.5, loss 1.2 -> 1.0
    ep.slots[1] = SeedSlot(Stage.BLENDING, blueprint=2, alpha=0.5, epochs_in_stage=2, params=costs[1][2])
    ep.slots[1].acc_at_germination = 0.45
    ep.slots[2] = SeedSlot(Stage.CULLED, blueprint=0, epochs_in_stage=0)  # its module is gone
    return features, ep


def test_the_graph_fits_the_schema_and_its_static_parts_are_read_only() -> None:
    features, ep = _episode()
    graph = features.graph(ep, ep.added_params(), ep.budget_left())
    graph.validate(host_schema(3, len(CATALOG)))
    widths = {"global": GLOBAL_FEATURES, "layer": LAYER_FEATURES, "slot": SLOT_FEATURES}
    widths["blueprint"] = BLUEPRINT_FEATURES
    for node_type, cols in widths.items():
        assert graph.node_features[node_type].dtype == np.float32
        assert graph.node_features[node_type].shape[1] == len(cols)
    for arr in [*graph.edge_index.values(), *graph.edge_counts.values(), *graph.node_counts.values()]:
        assert not arr.flags.writeable


def test_global_and_layer_columns() -> None:
    features, ep = _episode()
    graph = features.graph(ep, ep.added_params(), ep.budget_left())
    g = graph.node_features["global"][0]
    assert g[_col(GLOBAL_FEATURES, "progress")] == pytest.approx(1 / 20)
    assert g[_col(GLOBAL_FEATURES, "val_acc_delta")] == pytest.approx(hf.DELTA_GAIN * 0.1)
    assert g[_col(GLOBAL_FEATURES, "val_loss")] == pytest.approx(1.0 / math.log(4))
    assert g[_col(GLOBAL_FEATURES, "live_seeds")] == pytest.approx(1 / 3)  # the culled seed holds nothing
    assert g[_col(GLOBAL_FEATURES, "chance_acc")] == pytest.approx(1 / 4)
    layer = graph.node_features["layer"]
    assert layer[0, _col(LAYER_FEATURES, "fan_in")] == pytest.approx(1.0)  # width 256: the top of the scale
    assert layer[:, _col(LAYER_FEATURES, "is_output")].tolist() == [0, 0, 0, 1]
    assert layer[:, _col(LAYER_FEATURES, "param_share")].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(layer[:, _col(LAYER_FEATURES, "weight_rms")], [0.3, 0.4, 0.5, 0.6], rtol=1e-6)
    np.testing.assert_allclose(
        layer[:, _col(LAYER_FEATURES, "grad_rms")], np.log1p(hf.GRAD_LOG_GAIN * ep.stats.layer_grad_rms), rtol=1e-6
    )


def test_slot_columns() -> None:
    features, ep = _episode()
    slot = features.graph(ep, ep.added_params(), ep.budget_left()).node_features["slot"]
    assert slot[:, _col(SLOT_FEATURES, "position")].tolist() == [0.0, 0.5, 1.0]
    for i, stage in enumerate([Stage.DORMANT, Stage.BLENDING, Stage.CULLED]):
        assert slot[i, _col(SLOT_FEATURES, f"stage_{stage}")] == 1.0
    assert slot[1, _col(SLOT_FEATURES, "alpha")] == 0.5
    assert slot[1, _col(SLOT_FEATURES, "epochs_in_stage")] == pytest.approx(2 / hf.EPOCH_COUNT_SCALE)
    assert slot[1, _col(SLOT_FEATURES, "seed_acc_delta")] == pytest.approx(hf.DELTA_GAIN * 0.05)
    assert slot[:, _col(SLOT_FEATURES, "blend_gain")].tolist() == pytest.approx([0.0, 1.0, -0.3])  # clipped
    assert slot[:, _col(SLOT_FEATURES, "can_germinate")].tolist() == [1.0, 0.0, 0.0]
    assert slot[0, _col(SLOT_FEATURES, "input_width")] == pytest.approx(1.0)
    fits = [cost <= ep.budget_left() for cost in ep.costs[0]]
    assert fits == [True, False, True]  # the wide MLP on the 256-wide input is over the budget
    assert slot[0, _col(SLOT_FEATURES, "affordable_blueprints")] == pytest.approx(2 / 3)


def test_blueprint_columns_and_planted_edges() -> None:
    features, ep = _episode()
    graph = features.graph(ep, ep.added_params(), ep.budget_left())
    bpf = graph.node_features["blueprint"]
    assert bpf[:, _col(BLUEPRINT_FEATURES, "in_use")].tolist() == pytest.approx([0.0, 0.0, 1 / 3])
    assert bpf[0, _col(BLUEPRINT_FEATURES, "width_multiplier")] == pytest.approx(2 / hf.BLUEPRINT_SIZE_SCALE)
    assert bpf[2, _col(BLUEPRINT_FEATURES, "rank")] == pytest.approx(4 / hf.BLUEPRINT_SIZE_SCALE)
    assert bpf[:, _col(BLUEPRINT_FEATURES, "kind_low_rank")].tolist() == [0.0, 0.0, 1.0]
    assert (bpf[:, _col(BLUEPRINT_FEATURES, "cost_min")] <= bpf[:, _col(BLUEPRINT_FEATURES, "cost_max")]).all()
    # Only the blending seed is planted: the culled one's module is gone.
    assert graph.edge_index[PLANTED].tolist() == [[2], [1]]
    assert graph.edge_index[hf.GROWS].tolist() == [[1], [2]]
    assert graph.edge_counts[PLANTED].tolist() == [1]


def test_an_empty_budget_makes_nothing_affordable() -> None:
    features, ep = _episode()
    graph = features.graph(ep, ep.added_params(), left=0)
    assert (graph.node_features["slot"][:, _col(SLOT_FEATURES, "affordable_blueprints")] == 0.0).all()
    assert (graph.node_features["blueprint"][:, _col(BLUEPRINT_FEATURES, "affordable_slots")] == 0.0).all()
    assert graph.node_features["global"][0, _col(GLOBAL_FEATURES, "budget_left")] == 0.0


def test_planted_edge_layouts_are_cached() -> None:
    features, _ = _episode()
    a, b = features.planted_edges((0, 2), (1, 2)), features.planted_edges((0, 2), (1, 2))
    assert all(x is y for x, y in zip(a, b, strict=True))
    assert features.planted_edges((), ())[0].shape == (2, 0)
