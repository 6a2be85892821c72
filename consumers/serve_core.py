"""Serving's pure core: `SystemStatePacket` record values in, greedy `AdaptationCommand`s out.

`Decider.decide(values)` is decode → validate → one batched greedy forward pass → command encode,
with no Kafka in it (`consumers/serving.py` is the loop); it is also what `bench/serve.py` times.
A state packet must carry the observation graph (`graph`, a one-graph `GraphState` of the serving
env's schema) and the joint action mask (`action_mask`, ``np.packbits`` of M booleans) — what
`HostEnv.state_packet()` builds.  Everything that can be wrong with a record (not an envelope,
another payload type, a wrong schema version, non-finite values, a graph of another schema, a mask
of the wrong length or with no valid action) comes back as that decision's error, to dead-letter.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np

from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.commands import command_from_action
from tamiyo.contracts.errors import InvalidFieldError, LeylineError
from tamiyo.contracts.graph import GraphSchema, PackedGraphs
from tamiyo.contracts.packing import graphs_from_proto, unpack_mask
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.validation import validate_payload
from tamiyo.policy.model import TamiyoGNN
from tamiyo.policy.swappable import SwappablePolicy


class GreedyPolicy(SwappablePolicy):
    """`SwappablePolicy` that acts deterministically: the most probable valid action of every head."""

    def __init__(self, model: TamiyoGNN | None = None, version: int = -1, device: str = "cpu") -> None:
        super().__init__(model, version, device, deterministic=True)


@dataclass
class Decision:
    """One state packet's outcome: a command (``value`` to publish under ``key``) or an error."""

    key: bytes = b""
    value: bytes = b""
    command: pb.AdaptationCommand | None = None
    error: BaseException | None = None


@dataclass
class _Parsed:
    run_id: str
    epoch: int
    graph: PackedGraphs
    mask: np.ndarray


class Decider:
    """Decode → validate → one batched greedy forward pass → encode.  No Kafka here."""

    def __init__(
        self,
        policy: SwappablePolicy,
        schema: GraphSchema,
        blueprint_ids: tuple[str, ...] | list[str],
        encoder: EnvelopeEncoder | None = None,
    ) -> None:
        self.policy = policy
        self.schema = schema
        self.blueprint_ids = tuple(blueprint_ids)
        self.joint = schema.joint_action_count
        _, self._slots, self._blueprints = schema.head_sizes
        self.encoder = encoder or EnvelopeEncoder(source="serve")

    def parse(self, value: bytes) -> _Parsed:
        """Decode one record value into (run id, epoch, graph, mask), or raise why it cannot be served."""
        # Validate without the graph first, then decode the graph once (the codec's own validator
        # would decode it a second time).
        pkt = decode_envelope(value, expect=pb.SystemStatePacket, validate=False).payload
        if not pkt.HasField("graph"):
            raise InvalidFieldError("state packet carries no graph")
        if pkt.graph.schema_name and pkt.graph.schema_name != self.schema.name:
            raise InvalidFieldError(f"graph of schema {pkt.graph.schema_name!r}, serving {self.schema.name!r}")
        graph = graphs_from_proto(pkt.graph)
        pkt.ClearField("graph")
        validate_payload(pkt)
        if graph.num_graphs != 1:
            raise InvalidFieldError(f"state packet holds {graph.num_graphs} graphs, expected 1")
        try:
            graph.validate(self.schema)
        except ValueError as err:
            raise InvalidFieldError(f"graph does not match schema {self.schema.name!r}: {err}") from err
        mask = unpack_mask(pkt.action_mask, self.joint)
        if not mask.any():
            raise InvalidFieldError("action mask allows no action")
        if not pkt.training_run_id:
            raise InvalidFieldError("state packet has no training_run_id")
        return _Parsed(pkt.training_run_id, int(pkt.current_epoch), graph, mask)

    def decide(self, values: list[bytes]) -> list[Decision]:
        out = [Decision() for _ in values]
        parsed: list[tuple[int, _Parsed]] = []
        for i, value in enumerate(values):
            try:
                parsed.append((i, self.parse(value)))
            except (LeylineError, ValueError, TypeError) as err:
                out[i].error = err
        if not parsed:
            return out
        graphs = parsed[0][1].graph if len(parsed) == 1 else PackedGraphs.concat([p.graph for _, p in parsed])
        masks = np.stack([p.mask for _, p in parsed])
        try:
            step = self.policy(graphs, masks)
        except (RuntimeError, ValueError, IndexError) as err:
            if len(parsed) == 1:
                out[parsed[0][0]].error = err
                return out
            # Isolate the culprit: decide one by one.
            for i, value in ((i, values[i]) for i, _ in parsed):
                out[i] = self.decide([value])[0]
            return out
        now = time.time_ns()
        for row, (i, p) in enumerate(parsed):
            action = step.actions[row]
            if not p.mask[(int(action[0]) * self._slots + int(action[1])) * self._blueprints + int(action[2])]:
                out[i].error = InvalidFieldError(f"policy chose masked action {action.tolist()}")  # never expected
                continue
            cmd = command_from_action(
                action,
                run_id=p.run_id,
                epoch=p.epoch,
                blueprint_ids=self.blueprint_ids,
                log_prob=float(step.log_probs[row]),
                policy_version=step.version,
                issued_at_ns=now,
            )
            out[i] = Decision(key=p.run_id.encode(), value=self.encoder.encode(cmd), command=cmd)
        return out


@dataclass
class ServeStats:
    decisions: int = 0
    dead_lettered: int = 0
    batches: int = 0
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    publish_errors: int = 0


def serve_metrics(stats: ServeStats, policy_version: int, loaded: int, rejected: int) -> dict[str, float]:
    """Serving's telemetry: decisions, dead letters, snapshots loaded/rejected and the latency percentiles."""
    metrics = {
        "decisions": float(stats.decisions),
        "dead_lettered": float(stats.dead_lettered),
        "batches": float(stats.batches),
        "publish_errors": float(stats.publish_errors),
        "policy_version": float(policy_version),
        "snapshots_loaded": float(loaded),
        "snapshots_rejected": float(rejected),
    }
    if stats.latency_ms:
        lat = np.fromiter(stats.latency_ms, dtype=np.float64)
        metrics["decision_latency_ms_p50"] = float(np.percentile(lat, 50))
        metrics["decision_latency_ms_p95"] = float(np.percentile(lat, 95))
        metrics["decision_latency_ms_max"] = float(lat.max())
    return metrics
