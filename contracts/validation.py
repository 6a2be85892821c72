"""The contract check of every Leyline payload type: finite floats, ranges, consistent array sizes.

One explicit table (`VALIDATORS`) maps each payload class to its check; the codec runs it after
parsing a payload (``decode_envelope(validate=True)``).  Graphs and trajectories are checked by
decoding them (`packing`), which verifies every byte length and local index.  Nothing registers
itself at import time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.message import Message

from tamiyo.contracts.errors import InvalidFieldError, NonFiniteError, UnsupportedEncodingError
from tamiyo.contracts.packing import graphs_from_proto, unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb


def require_finite(values: Iterable[float], what: str) -> None:
    for v in values:
        if not math.isfinite(v):
            raise NonFiniteError(f"{what} is not finite ({v})")


def _seed_state(s: pb.SeedState) -> None:
    require_finite((s.alpha, s.gradient_norm, s.accuracy_delta), "seed state")
    if not 0.0 <= s.alpha <= 1.0:
        raise InvalidFieldError(f"seed alpha {s.alpha} outside [0, 1]")


def _state_packet(p: pb.SystemStatePacket) -> None:
    # Hot path (every state packet): one sum is finite iff every term is, so the
    # common case costs one isfinite; the per-field loop only runs to name the culprit.
    hw = p.hardware_context
    total = p.validation_accuracy + p.validation_loss + p.train_loss
    total += hw.total_memory_gb + hw.available_memory_gb + sum(p.training_metrics.values())
    if not math.isfinite(total):
        require_finite((p.validation_accuracy, p.validation_loss, p.train_loss), "state packet")
        require_finite(p.training_metrics.values(), "training metric")
        require_finite((hw.total_memory_gb, hw.available_memory_gb), "hardware context")
    if len(p.seed_states):
        for s in p.seed_states:
            _seed_state(s)
    if p.HasField("graph"):
        graphs_from_proto(p.graph)


def _command(c: pb.AdaptationCommand) -> None:
    require_finite((c.log_prob, c.optimizer_adjustment.lr_multiplier), "adaptation command")
    if c.HasField("optimizer_adjustment") and c.optimizer_adjustment.lr_multiplier <= 0:
        raise InvalidFieldError("lr_multiplier must be positive")


def _telemetry(t: pb.TelemetryPacket) -> None:
    require_finite((m.value for m in t.metrics), "telemetry metric")


def _priority_update(u: pb.PriorityUpdate) -> None:
    if not (len(u.indices) == len(u.keys) == len(u.priorities)):
        raise InvalidFieldError("indices, keys and priorities differ in length")
    require_finite(u.priorities, "priority")
    if any(p < 0 for p in u.priorities):
        raise InvalidFieldError("negative priority")
    # uint64 on the wire, int64 in the store: a larger value would wrap negative (and pass a bounds check).
    if len(u.indices) and max(max(u.indices), max(u.keys)) > _INT64_MAX:
        raise InvalidFieldError("priority index or key beyond int64")
    if len(u.rejected_indices) != len(u.rejected_keys):
        raise InvalidFieldError("rejected indices and keys differ in length")
    if len(u.rejected_indices) and max(max(u.rejected_indices), max(u.rejected_keys)) > _INT64_MAX:
        raise InvalidFieldError("rejected index or key beyond int64")


_INT64_MAX = (1 << 63) - 1


def _sampled_batch(b: pb.SampledBatch) -> None:
    require_finite((it.weight for it in b.items), "importance weight")
    for it in b.items:
        if not 0.0 <= it.weight <= 1.0:
            raise InvalidFieldError(f"importance weight {it.weight} outside [0, 1]")
        if it.encoding not in (pb.CONTENT_ENCODING_IDENTITY, pb.CONTENT_ENCODING_ZSTD):
            raise UnsupportedEncodingError(f"item encoding {it.encoding}")
        if not it.trajectory:
            raise InvalidFieldError("empty trajectory in batch")
        if max(it.index, it.key) > _INT64_MAX:  # the ack hands them back, and the replay's store holds int64
            raise InvalidFieldError("item index or key beyond int64")


def _snapshot(s: pb.PolicySnapshot) -> None:
    if len(s.sha256) != 32 or not s.signature or not s.weights or not s.policy_id:
        raise InvalidFieldError("policy snapshot lacks weights, policy_id, sha256 or signature")
    # Bounded here; the signature's scheme and key are judged by `signing.verify_snapshot`, which says why.
    if len(s.signature) > 64 or len(s.key_id) > 64:
        raise InvalidFieldError("policy snapshot signature or key id longer than 64 bytes")


# Payload types without an entry (HardwareContext, DeadLetter) need nothing beyond a successful parse.
VALIDATORS: dict[type[Message], Callable[[Any], object]] = {
    pb.SeedState: _seed_state,
    pb.SystemStatePacket: _state_packet,
    pb.AdaptationCommand: _command,
    pb.TelemetryPacket: _telemetry,
    pb.PriorityUpdate: _priority_update,
    pb.SampledBatch: _sampled_batch,
    pb.PolicySnapshot: _snapshot,
    pb.GraphState: graphs_from_proto,
    pb.Trajectory: unroll_from_proto,
}


def validate_payload(msg: Message) -> None:
    """Raise a `LeylineError` unless ``msg`` keeps its type's contract."""
    check = VALIDATORS.get(type(msg))
    if check is not None:
        check(msg)
