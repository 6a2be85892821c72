"""Realistic host-sized trajectory payloads for the replay benchmark and tests.

Not random bytes: a T-step unroll of host graphs shaped like the host envs'
(``producers.host_common.host_schema(4, 3)``: 1 global node, 5 layers, 4 seed
slots, 3 blueprints, 14 relations, feature widths 15/8/21/7), with what real
training telemetry looks like step to step: constants (positions, fan-in/out,
costs), one-hot lifecycle stages, slowly drifting metrics (accuracy, losses,
weight RMS) and a little float noise on gradient statistics.  Encoded with the
Leyline codec (``Trajectory`` protobuf; zstd on top for the stored form).
"""

from __future__ import annotations

import numpy as np

from tamiyo.contracts import codec
from tamiyo.contracts.graph import ActionHead, GraphSchema, NodeType, PackedGraphs, Relation
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.unroll import Unroll

NUM_SLOTS = 4
NUM_BLUEPRINTS = 3
NUM_LAYERS = NUM_SLOTS + 1
NUM_OPS = 6
FEATURES = {"global": 15, "layer": 8, "slot": 21, "blueprint": 7}


def host_like_schema() -> GraphSchema:
    rels = [
        Relation("layer", "next", "layer"),
        Relation("layer", "prev", "layer"),
        Relation("layer", "hosts", "slot"),
        Relation("slot", "feeds", "layer"),
        Relation("blueprint", "fits", "slot"),
        Relation("slot", "can_grow", "blueprint"),
        Relation("blueprint", "planted_in", "slot"),
        Relation("slot", "grows", "blueprint"),
    ]
    for other in ("layer", "slot", "blueprint"):
        rels += [Relation("global", "has", other), Relation(other, "part_of", "global")]
    return GraphSchema(
        name=f"tamiyo-host-s{NUM_SLOTS}-b{NUM_BLUEPRINTS}",
        node_types=tuple(NodeType(name, width) for name, width in FEATURES.items()),
        relations=tuple(rels),
        action_heads=(
            ActionHead("op", NUM_OPS),
            ActionHead("slot", NUM_SLOTS, "slot"),
            ActionHead("blueprint", NUM_BLUEPRINTS, "blueprint"),
        ),
    )


def host_like_unroll(
    rng: np.random.Generator,
    length: int = 20,
    actor_id: str = "actor-0",
    sequence: int = 0,
    policy_version: int = 0,
) -> Unroll:
    """One unroll of ``length`` steps (``length + 1`` graphs, the last the bootstrap observation)."""
    g = length + 1
    schema = host_like_schema()
    t = np.arange(g, dtype=np.float32)
    start = float(rng.uniform(0.0, 0.5))
    budget = 60.0

    glob = np.zeros((g, FEATURES["global"]), np.float32)
    val_acc = np.clip(0.3 + 0.5 * (1 - np.exp(-(t + start * budget) / 15)) + rng.normal(0, 0.004, g), 0, 1)
    val_loss = np.clip(1.0 - 0.8 * val_acc + rng.normal(0, 0.003, g), 0, None)
    glob[:, 0] = (t + start * budget) / budget
    glob[:, 1] = 1 - glob[:, 0]
    glob[:, 2] = val_acc
    glob[:, 3] = val_loss
    glob[:, 4] = val_loss * 0.9
    glob[1:, 5] = 10 * np.diff(val_acc)
    glob[1:, 6] = 10 * np.diff(val_loss)
    glob[:, 7] = np.minimum(t % 7, 5) / 10
    glob[:, 8] = np.log1p(np.abs(rng.normal(0.02, 0.005, g)) * 100)
    glob[:, 9] = np.log1p(1.5 * np.exp(-t / 30))
    glob[:, 10] = np.round(rng.integers(-1, 2) / 3, 4)
    live = (t >= length // 2).astype(np.float32)  # a seed germinates half way through
    glob[:, 11] = live * 0.05
    glob[:, 12] = 0.2 - glob[:, 11]
    glob[:, 13] = live / NUM_SLOTS
    glob[:, 14] = 0.1

    layer = np.zeros((g, NUM_LAYERS, FEATURES["layer"]), np.float32)
    layer[:, :, 0] = np.arange(NUM_LAYERS) / (NUM_LAYERS - 1)
    layer[:, :, 1] = np.log2([64, 128, 128, 128, 128]) / 8
    layer[:, :, 2] = np.log2([128, 128, 128, 128, 10]) / 8
    layer[:, -1, 3] = 1
    layer[:, :, 4] = np.array([0.2, 0.25, 0.25, 0.25, 0.05])
    layer[:, :, 5] = 0.1 + 0.001 * t[:, None] + rng.normal(0, 1e-4, (g, NUM_LAYERS))
    layer[:, :, 6] = np.log1p(1000 * np.abs(rng.normal(1e-3, 2e-4, (g, NUM_LAYERS))))
    layer[:, :-1, 7] = np.round(0.05 + 0.002 * t[:, None] + np.zeros((g, NUM_LAYERS - 1)), 3)

    slot = np.zeros((g, NUM_SLOTS, FEATURES["slot"]), np.float32)
    slot[:, :, 0] = np.arange(NUM_SLOTS) / (NUM_SLOTS - 1)
    stage = np.ones((g, NUM_SLOTS), np.int64)  # DORMANT
    stage[:, 1] = np.where(live > 0, np.minimum(2 + (t - length // 2) // 4, 6), 1).astype(np.int64)
    slot[np.arange(g)[:, None], np.arange(NUM_SLOTS)[None, :], stage] = 1.0  # one-hot at column = stage
    slot[:, 1, 12] = np.where(stage[:, 1] >= 4, np.minimum((t - length // 2 - 8) / 5, 1).clip(0), 0)
    slot[:, :, 13] = (t[:, None] % 4) / 10
    slot[:, 1, 14] = live * 0.05
    slot[:, 1, 16] = live * np.log1p(1000 * np.abs(rng.normal(1e-3, 1e-4, g)))
    slot[:, :, 18] = np.log1p(1000 * np.abs(rng.normal(5e-4, 5e-5, (g, NUM_SLOTS))))
    slot[:, :, 20] = (stage == 1).astype(np.float32)

    blueprint = np.zeros((g, NUM_BLUEPRINTS, FEATURES["blueprint"]), np.float32)
    blueprint[:, :, 0] = [0.05, 0.1, 0.02]
    blueprint[:, :, 1] = 1
    blueprint[:, :, 2] = [0.25, 1.0, 0.0]
    blueprint[:, :, 3] = [0.0, 0.0, 0.5]
    blueprint[:, :, 4] = [1, 1, 0]
    blueprint[:, :, 5] = [0, 0, 1]
    blueprint[:, 0, 6] = live / NUM_SLOTS

    graphs = _graphs(glob, layer, slot, blueprint, live > 0)
    actions = np.zeros((length, 3), np.int32)
    actions[length // 2 - 1] = [1, 1, 0]  # the germination
    masks = np.zeros((length, NUM_OPS, NUM_SLOTS, NUM_BLUEPRINTS), bool)
    masks[:, [0, 4, 5], 0, 0] = True
    masks[:, 1] = True
    masks[length // 2 :, 1, 1] = False
    masks[length // 2 :, 2:4, 1, 0] = True
    unroll = Unroll(
        graphs=graphs,
        actions=actions,
        action_masks=masks.reshape(length, -1),
        behaviour_log_probs=rng.normal(-1.2, 0.3, length).astype(np.float32),
        rewards=(np.diff(val_acc[: length + 1]) - 0.001 * live[:length]).astype(np.float32),
        terminated=np.zeros(length, bool),
        truncated=np.zeros(length, bool),
        final_graphs=None,
        policy_versions=np.full(length, policy_version, np.int64),
        actor_id=actor_id,
        sequence=sequence,
        env_id="host-sim",
    )
    unroll.validate(schema)
    return unroll


def trajectory_bytes(unroll: Unroll) -> bytes:
    """The serialised (uncompressed) Leyline ``Trajectory``."""
    return unroll_to_proto(unroll, host_like_schema().name).SerializeToString()


def compressed_payloads(count: int, seed: int = 0, length: int = 20, level: int = 3) -> tuple[list[bytes], list[bytes]]:
    """``count`` distinct unrolls as (raw serialised, zstd-compressed) payload lists."""
    rng = np.random.default_rng(seed)
    raw = [trajectory_bytes(host_like_unroll(rng, length, f"actor-{i % 8}", i // 8)) for i in range(count)]
    return raw, [codec.compress(r, level) for r in raw]


def _graphs(
    glob: np.ndarray, layer: np.ndarray, slot: np.ndarray, blueprint: np.ndarray, seeded: np.ndarray
) -> PackedGraphs:
    g = glob.shape[0]
    edges = _static_edges()
    # The seeded slot 1 grows blueprint 0 once germinated.
    planted = np.array([[0], [1]], np.int32)
    edge_index, edge_counts = {}, {}
    for key, e in edges.items():
        edge_index[key] = np.tile(e, (1, g))
        edge_counts[key] = np.full(g, e.shape[1], np.int32)
    for key, e in (
        (("blueprint", "planted_in", "slot"), planted),
        (("slot", "grows", "blueprint"), planted[::-1]),
    ):
        edge_index[key] = np.tile(e, (1, int(seeded.sum())))
        edge_counts[key] = seeded.astype(np.int32)
    return PackedGraphs(
        node_features={
            "global": glob,
            "layer": layer.reshape(-1, layer.shape[-1]),
            "slot": slot.reshape(-1, slot.shape[-1]),
            "blueprint": blueprint.reshape(-1, blueprint.shape[-1]),
        },
        node_counts={
            "global": np.ones(g, np.int32),
            "layer": np.full(g, NUM_LAYERS, np.int32),
            "slot": np.full(g, NUM_SLOTS, np.int32),
            "blueprint": np.full(g, NUM_BLUEPRINTS, np.int32),
        },
        edge_index=edge_index,
        edge_counts=edge_counts,
    )


def _static_edges() -> dict[tuple[str, str, str], np.ndarray]:
    layers, slots = np.arange(NUM_LAYERS - 1), np.arange(NUM_SLOTS)
    bp_all, slot_all = (a.ravel() for a in np.meshgrid(np.arange(NUM_BLUEPRINTS), slots, indexing="ij"))
    edges = {
        ("layer", "next", "layer"): np.stack([layers, layers + 1]),
        ("layer", "prev", "layer"): np.stack([layers + 1, layers]),
        ("layer", "hosts", "slot"): np.stack([slots, slots]),
        ("slot", "feeds", "layer"): np.stack([slots, slots + 1]),
        ("blueprint", "fits", "slot"): np.stack([bp_all, slot_all]),
        ("slot", "can_grow", "blueprint"): np.stack([slot_all, bp_all]),
    }
    for other, n in (("layer", NUM_LAYERS), ("slot", NUM_SLOTS), ("blueprint", NUM_BLUEPRINTS)):
        idx = np.arange(n)
        edges[("global", "has", other)] = np.stack([np.zeros(n, np.int64), idx])
        edges[(other, "part_of", "global")] = np.stack([idx, np.zeros(n, np.int64)])
    return {k: np.ascontiguousarray(v, dtype=np.int32) for k, v in edges.items()}
