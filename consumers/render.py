"""Render one Kafka record (an `EventEnvelope` value) as JSON-ready dicts, for humans and `jq`.

Pure functions, no Kafka: `render_record` never raises.  A record that does not
decode is rendered with ``"ok": false`` and ``"error": {"reason": <LeylineError
subclass name>, "message": ...}`` (plus the envelope when only the payload was
bad), exactly the reason a service would dead-letter it with.

Payloads go through protobuf's ``json_format`` (field names as in the .proto,
enums by name, 64-bit integers as strings per the proto3 JSON mapping), except
the bulky packed arrays: graphs are summarised (node/edge counts per type),
trajectories too (T, heads, reward sum, episode returns, policy versions...),
batches list their items with each trajectory summarised, snapshots show sizes
and digests instead of weights.  ``full=True`` decodes the packed arrays into
lists instead.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from tamiyo.contracts.codec import (
    DEFAULT_LIMITS,
    PAYLOAD_TYPES,
    CodecLimits,
    decode_payload_bytes,
    parse_envelope,
    parse_message,
)
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.packing import graphs_from_proto, unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.validation import validate_payload


def iso_ms(timestamp_ms: int | None) -> str | None:
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds")


def bytes_field(data: bytes | None) -> dict[str, Any] | str | None:
    """A key or header value: text when it is printable UTF-8, else ``{"b64": ...}``."""
    if data is None:
        return None
    try:
        text = bytes(data).decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return {"b64": base64.b64encode(bytes(data)).decode("ascii")}


def error_dict(err: BaseException) -> dict[str, str]:
    return {"reason": type(err).__name__, "message": str(err)}


def encoding_name(value: int) -> str:
    try:
        return pb.ContentEncoding.Name(value)
    except ValueError:
        return str(value)


def envelope_dict(env: pb.EventEnvelope) -> dict[str, Any]:
    return {
        "event_id": env.event_id,
        "payload_type": env.payload_type,
        "schema_version": env.schema_version,
        "source": env.source,
        "created_at_ns": env.created_at_ns,
        "created_at": iso_ms(env.created_at_ns // 1_000_000) if env.created_at_ns else None,
        "producer_id": env.producer_id,
        "sequence": env.sequence,
        "content_encoding": encoding_name(env.content_encoding),
        "uncompressed_size": env.uncompressed_size,
        "payload_bytes": len(env.payload),
        "correlation_id": env.correlation_id,
    }


def _to_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _num(x: float) -> float | str:
    x = float(x)
    return x if np.isfinite(x) else str(x)


# ---------------------------------------------------------------- per-type renderers


def render_graph(msg: pb.GraphState, full: bool = False) -> dict[str, Any]:
    """Node counts per type and edge counts per relation (``full``: the arrays as lists)."""
    out: dict[str, Any] = {"schema_name": msg.schema_name, "num_graphs": msg.num_graphs}
    try:
        g = graphs_from_proto(msg)
    except LeylineError as err:
        out["error"] = error_dict(err)
        return out
    nodes: dict[str, Any] = {}
    for name, feats in g.node_features.items():
        entry: dict[str, Any] = {"count": int(feats.shape[0]), "num_features": int(feats.shape[1])}
        if full:
            entry["per_graph"] = g.node_counts[name].tolist()
            entry["features"] = feats.tolist()
        nodes[name] = entry
    edges: dict[str, Any] = {}
    for key, index in g.edge_index.items():
        entry = {"count": int(index.shape[1])}
        if full:
            entry["per_graph"] = g.edge_counts[key].tolist()
            entry["index"] = index.tolist()
        edges[":".join(key)] = entry
    out["nodes"] = nodes
    out["edges"] = edges
    return out


def render_trajectory(msg: pb.Trajectory, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "actor_id": msg.actor_id,
        "sequence": msg.sequence,
        "env_id": msg.env_id,
        "schema_name": msg.schema_name,
        "T": msg.length,
        "num_heads": msg.num_heads,
        "joint_action_count": msg.joint_action_count,
    }
    try:
        u = unroll_from_proto(msg)
    except LeylineError as err:
        out["error"] = error_dict(err)
        return out
    out.update(
        {
            "rewards_sum": _num(u.rewards.sum()),
            "rewards_mean": _num(u.rewards.mean()),
            "behaviour_log_prob_mean": _num(u.behaviour_log_probs.mean()),
            "terminated": int(u.terminated.sum()),
            "truncated": int(u.truncated.sum()),
            "episode_returns": [_num(x) for x in u.episode_returns],
            "policy_versions": {"min": int(u.policy_versions.min()), "max": int(u.policy_versions.max())},
            "valid_actions_mean": _num(u.action_masks.sum(axis=1).mean()),
            "graphs": render_graph(msg.graphs, full),
            "final_graphs": render_graph(msg.final_graphs, full) if msg.HasField("final_graphs") else None,
        }
    )
    if full:
        out.update(
            {
                "actions": u.actions.tolist(),
                "action_masks": u.action_masks.astype(np.uint8).tolist(),
                "behaviour_log_probs": u.behaviour_log_probs.tolist(),
                "rewards": u.rewards.tolist(),
                "terminated_steps": u.terminated.astype(np.uint8).tolist(),
                "truncated_steps": u.truncated.astype(np.uint8).tolist(),
                "policy_versions_steps": u.policy_versions.tolist(),
            }
        )
    return out


def render_batch(msg: pb.SampledBatch, full: bool = False, limits: CodecLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    items = []
    for it in msg.items:
        item: dict[str, Any] = {
            "index": it.index,
            "key": it.key,
            "weight": _num(it.weight),
            "encoding": encoding_name(it.encoding),
            "uncompressed_size": it.uncompressed_size,
            "bytes": len(it.trajectory),
        }
        try:
            raw = decode_payload_bytes(it.trajectory, it.encoding, it.uncompressed_size, limits)
            item["trajectory"] = render_trajectory(parse_message(pb.Trajectory, raw), full)
        except LeylineError as err:
            item["trajectory"] = {"error": error_dict(err)}
        items.append(item)
    return {
        "batch_id": msg.batch_id,
        "replay_id": msg.replay_id,
        "buffer_size": msg.buffer_size,
        "beta": _num(msg.beta),
        "created_at_ns": msg.created_at_ns,
        "num_items": len(items),
        "steps": sum(int(i["trajectory"].get("T", 0)) for i in items if "error" not in i["trajectory"]),
        "items": items,
    }


def render_snapshot(msg: pb.PolicySnapshot, full: bool = False) -> dict[str, Any]:
    out = _to_dict(msg)
    out.pop("weights", None)
    out["weights_bytes"] = len(msg.weights)
    out["sha256"] = msg.sha256.hex()
    out["signature"] = msg.signature.hex()
    try:
        out["config"] = json.loads(msg.config_json) if msg.config_json else None
        out.pop("config_json", None)
    except ValueError:
        pass
    return out


def render_state(msg: pb.SystemStatePacket, full: bool = False) -> dict[str, Any]:
    out = _to_dict(msg)
    if msg.HasField("graph"):
        out["graph"] = render_graph(msg.graph, full)
    if msg.action_mask:
        out["action_mask"] = {
            "bytes": len(msg.action_mask),
            "set_bits": int(np.unpackbits(np.frombuffer(msg.action_mask, np.uint8)).sum()),
        }
        if full:
            out["action_mask"]["bits"] = np.unpackbits(np.frombuffer(msg.action_mask, np.uint8)).tolist()
    return out


def render_deadletter(msg: pb.DeadLetter, full: bool = False) -> dict[str, Any]:
    out = _to_dict(msg)
    out.pop("original_value", None)
    out["original_key"] = bytes_field(msg.original_key)
    out["original_value_bytes"] = len(msg.original_value)
    if full:
        out["original_value"] = base64.b64encode(msg.original_value).decode("ascii")
    return out


# Each takes its own message type: Any, as a mapping cannot tie a key's type to its value's parameter.
_RENDERERS: dict[type[Message], Callable[[Any, bool], dict[str, Any]]] = {
    pb.GraphState: render_graph,
    pb.Trajectory: render_trajectory,
    pb.SampledBatch: render_batch,
    pb.PolicySnapshot: render_snapshot,
    pb.SystemStatePacket: render_state,
    pb.DeadLetter: render_deadletter,
}


def render_payload(msg: Message, full: bool = False) -> dict[str, Any]:
    fn = _RENDERERS.get(type(msg))
    return fn(msg, full) if fn is not None else _to_dict(msg)


# ---------------------------------------------------------------- records


def render_value(value: bytes | None, full: bool = False, limits: CodecLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """``{"ok", "envelope"?, "payload"?, "error"?}`` for one record value; never raises."""
    if value is None:
        return {"ok": False, "error": {"reason": "Tombstone", "message": "record value is null"}}
    try:
        env = parse_envelope(value, limits)
    except LeylineError as err:
        return {"ok": False, "error": error_dict(err)}
    except Exception as err:  # a bug in a parser must not stop a debugging tool
        return {"ok": False, "error": error_dict(err)}
    out: dict[str, Any] = {"ok": True, "envelope": envelope_dict(env)}
    try:
        raw = decode_payload_bytes(env.payload, env.content_encoding, env.uncompressed_size, limits)
        payload = parse_message(PAYLOAD_TYPES[env.payload_type], raw)
        validate_payload(payload)
        out["payload"] = render_payload(payload, full)
    except Exception as err:
        out["ok"] = False
        out["error"] = error_dict(err)
    return out


def classify_value(
    value: bytes | None, limits: CodecLimits = DEFAULT_LIMITS
) -> tuple[pb.EventEnvelope | None, str | None]:
    """(envelope or None, error reason or None): the cheap decode `stats` needs (no rendering)."""
    if value is None:
        return None, "Tombstone"
    try:
        env = parse_envelope(value, limits)
    except Exception as err:
        return None, type(err).__name__
    try:
        raw = decode_payload_bytes(env.payload, env.content_encoding, env.uncompressed_size, limits)
        validate_payload(parse_message(PAYLOAD_TYPES[env.payload_type], raw))
    except Exception as err:
        return env, type(err).__name__
    return env, None


def record_meta(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]] = (),
) -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "timestamp": iso_ms(timestamp_ms),
        "key": bytes_field(key),
        "size": len(value) if value is not None else 0,
        "headers": {name: bytes_field(v) for name, v in headers},
    }


def render_record(rec: Any, full: bool = False, limits: CodecLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Render an aiokafka ``ConsumerRecord`` (or anything with the same attributes)."""
    out = record_meta(
        rec.topic, rec.partition, rec.offset, rec.timestamp, rec.key, rec.value, getattr(rec, "headers", ()) or ()
    )
    out.update(render_value(rec.value, full, limits))
    return out


def to_json(obj: dict[str, Any], pretty: bool) -> str:
    return json.dumps(obj, indent=2 if pretty else None, separators=None if pretty else (",", ":"), default=str)
