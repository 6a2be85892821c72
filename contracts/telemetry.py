"""Build a `TelemetryPacket`: the one way every service (actor, replay, learner, serve) reports.

Every metric and event carries the packet's timestamp.  Non-finite values are left out: a NaN or
inf in telemetry breaks JSON consumers and plots downstream, and the health status (and the
learner's `update_skipped` event) already says that something went wrong.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tamiyo.contracts.proto import leyline_pb2 as pb


@dataclass(frozen=True)
class LabelledMetric:
    """A metric with its own labels, e.g. a count per dead-letter reason."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    name: str
    message: str
    severity: int = pb.SEVERITY_INFO


def telemetry_packet(
    source: str,
    run_id: str,
    metrics: Mapping[str, float],
    *,
    healthy: bool = True,
    labels: Mapping[str, str] | None = None,
    labelled: Iterable[LabelledMetric] = (),
    events: Iterable[Event] = (),
    timestamp_ns: int | None = None,
) -> pb.TelemetryPacket:
    """``metrics`` all get ``labels`` (if any); ``labelled`` metrics carry their own."""
    now = time.time_ns() if timestamp_ns is None else timestamp_ns
    packet = pb.TelemetryPacket(
        source=source,
        timestamp_ns=now,
        run_id=run_id,
        health=pb.HEALTH_OK if healthy else pb.HEALTH_DEGRADED,
    )
    common = dict(labels or {})
    for name, value in metrics.items():
        if math.isfinite(value):
            packet.metrics.add(name=name, value=float(value), labels=common, timestamp_ns=now)
    for m in labelled:
        if math.isfinite(m.value):
            packet.metrics.add(name=m.name, value=float(m.value), labels=dict(m.labels), timestamp_ns=now)
    for e in events:
        packet.events.add(name=e.name, message=e.message, severity=e.severity, timestamp_ns=now)
    return packet
