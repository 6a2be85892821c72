"""The shared TelemetryPacket builder every service reports through."""

from __future__ import annotations

import math

from tamiyo.contracts.codec import decode_envelope, encode_envelope
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.telemetry import Event, LabelledMetric, telemetry_packet


def test_metrics_labels_events_and_health_round_trip_through_an_envelope():
    packet = telemetry_packet(
        "learner",
        "run-7",
        {"loss": 0.25, "updates": 3.0},
        healthy=False,
        labels={"algo": "impala"},
        labelled=[LabelledMetric("deadlettered_by_reason", 2.0, {"reason": "MalformedRecordError"})],
        events=[Event("update_skipped", "non-finite loss", pb.SEVERITY_WARNING)],
        timestamp_ns=123,
    )
    back = decode_envelope(encode_envelope(packet, source="t", producer_id="t", sequence=0), expect=pb.TelemetryPacket)
    p = back.payload
    assert (p.source, p.run_id, p.timestamp_ns, p.health) == ("learner", "run-7", 123, pb.HEALTH_DEGRADED)
    got = {(m.name, m.value, tuple(sorted(m.labels.items())), m.timestamp_ns) for m in p.metrics}
    assert got == {
        ("loss", 0.25, (("algo", "impala"),), 123),
        ("updates", 3.0, (("algo", "impala"),), 123),
        ("deadlettered_by_reason", 2.0, (("reason", "MalformedRecordError"),), 123),
    }
    assert [(e.name, e.severity, e.timestamp_ns) for e in p.events] == [("update_skipped", pb.SEVERITY_WARNING, 123)]


def test_non_finite_values_are_left_out_and_a_healthy_packet_says_ok():
    packet = telemetry_packet(
        "actor/a0",
        "r",
        {"ok": 1.0, "nan": math.nan, "inf": math.inf},
        labelled=[LabelledMetric("bad", -math.inf)],
    )
    assert [m.name for m in packet.metrics] == ["ok"]
    assert packet.health == pb.HEALTH_OK and not packet.events and not packet.metrics[0].labels
    assert packet.timestamp_ns > 0 and packet.metrics[0].timestamp_ns == packet.timestamp_ns
