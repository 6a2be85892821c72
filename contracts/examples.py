"""Small, valid example payloads of every Leyline type (demo, tests, benchmarks)."""

from __future__ import annotations

import hashlib
import time

import numpy as np

from tamiyo.contracts.graph import ActionHead, GraphSchema, NodeType, PackedGraphs, Relation, single_graph
from tamiyo.contracts.packing import graphs_to_proto, unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.unroll import Unroll

EXAMPLE_SCHEMA = GraphSchema(
    name="example-host",
    node_types=(NodeType("global", 8), NodeType("layer", 6), NodeType("slot", 5), NodeType("blueprint", 4)),
    relations=(
        Relation("layer", "next", "layer"),
        Relation("slot", "feeds", "layer"),
        Relation("blueprint", "fits", "slot"),
        Relation("global", "sees", "layer"),
    ),
    action_heads=(
        ActionHead("op", 6),
        ActionHead("slot", 3, "slot"),
        ActionHead("blueprint", 2, "blueprint"),
    ),
)


def seed_document_state_packet() -> pb.SystemStatePacket:
    """The example packet of the seed design document (epoch 100, val acc 0.85, ...)."""
    return pb.SystemStatePacket(
        version=1,
        current_epoch=100,
        validation_accuracy=0.85,
        validation_loss=0.32,
        training_metrics={
            "loss_variance": 0.05,
            "gradient_norm": 2.3,
            "learning_rate": 3e-4,
            "batch_size": 64.0,
        },
        hardware_context=pb.HardwareContext(device_type="cuda", total_memory_gb=40.0, available_memory_gb=35.2),
        timestamp_ns=time.time_ns(),
    )


def example_graph(rng: np.random.Generator, schema: GraphSchema = EXAMPLE_SCHEMA, layers: int = 4) -> PackedGraphs:
    counts = {
        "global": 1,
        "layer": layers,
        "slot": schema.action_heads[1].size,
        "blueprint": schema.action_heads[2].size,
    }
    feats = {
        nt.name: rng.standard_normal((counts[nt.name], nt.num_features)).astype(np.float32) for nt in schema.node_types
    }
    edges = {
        ("layer", "next", "layer"): np.array([np.arange(layers - 1), np.arange(1, layers)]),
        ("slot", "feeds", "layer"): np.array([np.arange(counts["slot"]), np.arange(counts["slot"]) % layers]),
        ("blueprint", "fits", "slot"): np.array(
            [
                np.repeat(np.arange(counts["blueprint"]), counts["slot"]),
                np.tile(np.arange(counts["slot"]), counts["blueprint"]),
            ]
        ),
        ("global", "sees", "layer"): np.array([np.zeros(layers, int), np.arange(layers)]),
    }
    return single_graph(feats, edges)


def example_unroll(
    rng: np.random.Generator,
    length: int = 20,
    schema: GraphSchema = EXAMPLE_SCHEMA,
    truncate_at: int | None = None,
) -> Unroll:
    graphs = PackedGraphs.concat([example_graph(rng, schema) for _ in range(length + 1)])
    sizes = schema.head_sizes
    masks = rng.random((length, schema.joint_action_count)) < 0.6
    actions = np.stack([rng.integers(0, s, size=length) for s in sizes], axis=1).astype(np.int32)
    masks[np.arange(length), np.ravel_multi_index(tuple(actions.T), sizes)] = True
    truncated = np.zeros(length, bool)
    terminated = np.zeros(length, bool)
    if truncate_at is not None:
        truncated[truncate_at] = True
    final = PackedGraphs.concat([example_graph(rng, schema)]) if truncate_at is not None else None
    return Unroll(
        graphs=graphs,
        actions=actions,
        action_masks=masks,
        behaviour_log_probs=-rng.random(length).astype(np.float32) * 3,
        rewards=rng.standard_normal(length).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        final_graphs=final,
        policy_versions=np.full(length, 7, np.int64),
        actor_id="actor-0",
        sequence=int(rng.integers(0, 1 << 30)),
        env_id="example",
        episode_returns=np.array([1.5], np.float32),
    )


def example_payloads(rng: np.random.Generator) -> list:
    """One valid message of each Leyline payload type."""
    weights = rng.bytes(256)
    return [
        seed_document_state_packet(),
        pb.SeedState(slot_index=1, stage=pb.SEED_STAGE_BLENDING, blueprint_id="residual_mlp", alpha=0.4),
        pb.HardwareContext(device_type="cpu", total_memory_gb=24.0, available_memory_gb=20.0),
        pb.AdaptationCommand(
            command_id="c1",
            training_run_id="run-1",
            policy_version=3,
            seed_operation=pb.SeedOperation(op=pb.SEED_OP_GERMINATE, slot_index=2, blueprint_id="lora"),
        ),
        pb.TelemetryPacket(
            source="learner",
            metrics=[pb.MetricPoint(name="loss", value=0.5, labels={"algo": "ppo"})],
            health=pb.HEALTH_OK,
        ),
        graphs_to_proto(example_graph(rng), EXAMPLE_SCHEMA.name),
        unroll_to_proto(example_unroll(rng, truncate_at=5), EXAMPLE_SCHEMA.name),
        pb.SampledBatch(
            batch_id=9,
            items=[pb.SampledItem(index=3, key=1, weight=0.5, encoding=pb.CONTENT_ENCODING_IDENTITY, trajectory=b"x")],
        ),
        pb.PriorityUpdate(batch_id=9, indices=[3, 4], keys=[1, 1], priorities=[0.3, 1.2], learner_step=10),
        pb.PolicySnapshot(
            policy_id="tamiyo",
            version=4,
            weights=weights,
            config_json="{}",
            sha256=hashlib.sha256(weights).digest(),
            signature=bytes(32),
        ),
        pb.DeadLetter(source_topic="t", partition=0, offset=5, reason="MalformedRecordError", original_value=b"\x00"),
    ]
