"""Envelope codec: round trips and every typed failure."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from tamiyo.contracts import codec, errors
from tamiyo.contracts.examples import example_payloads, seed_document_state_packet
from tamiyo.contracts.proto import leyline_pb2 as pb


def _env(payload, **kw) -> bytes:
    return codec.encode_envelope(payload, source="test", producer_id="p-1", sequence=kw.pop("sequence", 0), **kw)


def test_every_payload_type_round_trips():
    payloads = example_payloads(np.random.default_rng(1))
    assert {type(p) for p in payloads} == set(codec.PAYLOAD_CLASSES)
    for i, p in enumerate(payloads):
        data = _env(p, sequence=i, correlation_id="run-7")
        d = codec.decode_envelope(data)
        assert d.payload == p
        assert d.envelope.payload_type == p.DESCRIPTOR.full_name
        assert d.envelope.schema_version == codec.SCHEMA_VERSION
        assert (d.envelope.producer_id, d.envelope.sequence, d.envelope.source) == ("p-1", i, "test")
        assert d.envelope.correlation_id == "run-7"
        assert d.envelope.created_at_ns > 0 and len(d.envelope.event_id) == 24


def test_large_payloads_are_zstd_compressed_small_ones_are_not():
    small = seed_document_state_packet()
    assert codec.parse_envelope(_env(small)).content_encoding == pb.CONTENT_ENCODING_IDENTITY
    big = pb.TelemetryPacket(source="x", metrics=[pb.MetricPoint(name="m", value=1.0)] * 200)
    env = codec.parse_envelope(_env(big))
    assert env.content_encoding == pb.CONTENT_ENCODING_ZSTD
    assert env.uncompressed_size == big.ByteSize() > len(env.payload)


def test_encoder_sequences_strictly_increase():
    enc = codec.EnvelopeEncoder("actor", producer_id="a-1", start_sequence=5)
    seqs = [codec.parse_envelope(enc.encode(seed_document_state_packet())).sequence for _ in range(4)]
    assert seqs == [5, 6, 7, 8]


def test_seed_document_packet_fits_its_budget():
    assert seed_document_state_packet().ByteSize() <= 280


def test_expect_rejects_other_payload_types():
    with pytest.raises(errors.UnknownPayloadTypeError):
        codec.decode_envelope(_env(seed_document_state_packet()), expect=pb.Trajectory)


def _mutated(**changes) -> bytes:
    env = codec.parse_envelope(_env(seed_document_state_packet()))
    for k, v in changes.items():
        setattr(env, k, v)
    return env.SerializeToString()


def test_specific_failures_raise_their_own_error_type():
    packet = seed_document_state_packet()
    raw = packet.SerializeToString()
    cases: list[tuple[bytes, type[errors.LeylineError]]] = [
        (b"", errors.MalformedRecordError),
        (b"\xff\xff\xff", errors.MalformedRecordError),
        (_env(packet)[:-7], errors.MalformedRecordError),
        (_mutated(schema_version=99), errors.SchemaVersionError),
        (_mutated(payload_type="leyline.v1.Nope"), errors.UnknownPayloadTypeError),
        (_mutated(content_encoding=7), errors.UnsupportedEncodingError),
        (_mutated(uncompressed_size=len(raw) + 1), errors.SizeMismatchError),
        (_mutated(uncompressed_size=1 << 40), errors.OversizeError),
        (_mutated(payload=raw[:-3], uncompressed_size=len(raw) - 3), errors.MalformedRecordError),
    ]
    for data, err in cases:
        with pytest.raises(err):
            codec.decode_envelope(data)


def test_decompression_bomb_is_refused_before_it_inflates():
    limits = codec.CodecLimits(max_payload_bytes=1 << 20)
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))  # 64 MiB of zeros in a few KiB
    data = _mutated(content_encoding=pb.CONTENT_ENCODING_ZSTD, payload=bomb, uncompressed_size=100)
    with pytest.raises(errors.OversizeError):
        codec.decode_envelope(data, limits=limits)
    # Same bomb without a content size in its frame header: streaming decode stops at the cap.
    streamed = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    no_size = streamed.compress(b"\0" * (64 << 20)) + streamed.flush()
    data = _mutated(content_encoding=pb.CONTENT_ENCODING_ZSTD, payload=no_size, uncompressed_size=100)
    with pytest.raises(errors.OversizeError):
        codec.decode_envelope(data, limits=limits)


def test_oversized_record_is_refused_unparsed():
    with pytest.raises(errors.OversizeError):
        codec.decode_envelope(b"\0" * 2048, limits=codec.CodecLimits(max_record_bytes=1024))


@pytest.mark.parametrize("field", ["validation_accuracy", "validation_loss", "train_loss"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_state_packet_fields_are_refused(field, value):
    p = seed_document_state_packet()
    setattr(p, field, value)
    with pytest.raises(errors.NonFiniteError):
        codec.decode_envelope(_env(p))


def test_non_finite_metric_map_and_priorities_are_refused():
    p = seed_document_state_packet()
    p.training_metrics["gradient_norm"] = float("nan")
    with pytest.raises(errors.NonFiniteError):
        codec.decode_envelope(_env(p))
    u = pb.PriorityUpdate(batch_id=1, indices=[1], keys=[1], priorities=[float("inf")])
    with pytest.raises(errors.NonFiniteError):
        codec.decode_envelope(_env(u))


def test_two_hundred_malformed_inputs_each_raise_a_typed_error():
    """Random, truncated, wrong-version, bomb and NaN inputs: only LeylineErrors, of the expected kind."""
    rng = np.random.default_rng(2024)
    good = [_env(p, sequence=i) for i, p in enumerate(example_payloads(rng))]
    limits = codec.CodecLimits(max_payload_bytes=1 << 20)
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (8 << 20))
    cases: list[tuple[bytes, tuple[type[errors.LeylineError], ...]]] = []
    for i in range(200):
        kind = i % 5
        if kind == 0:  # random noise
            data = rng.bytes(int(rng.integers(0, 400)))
            expected: tuple[type[errors.LeylineError], ...] = (errors.LeylineError,)
        elif kind == 1:  # a valid record cut short
            src = good[int(rng.integers(len(good)))]
            data = src[: int(rng.integers(0, len(src) - 1))]
            expected = (errors.MalformedRecordError, errors.SizeMismatchError, errors.LeylineError)
        elif kind == 2:  # wrong schema version
            env = codec.parse_envelope(good[int(rng.integers(len(good)))])
            env.schema_version = int(rng.choice([2, 3, 17, 1000]))
            data, expected = env.SerializeToString(), (errors.SchemaVersionError,)
        elif kind == 3:  # decompression bomb
            env = codec.parse_envelope(good[0])
            env.content_encoding = pb.CONTENT_ENCODING_ZSTD
            env.payload = bomb
            env.uncompressed_size = int(rng.integers(1, 1000))
            data, expected = env.SerializeToString(), (errors.OversizeError,)
        else:  # NaN in a field the contract says is finite
            p = seed_document_state_packet()
            target = ["validation_accuracy", "validation_loss", "train_loss"][i % 3]
            setattr(p, target, float("nan"))
            data, expected = _env(p), (errors.NonFiniteError,)
        cases.append((data, expected))
    raised = 0
    for data, expected in cases:
        try:
            codec.decode_envelope(data, limits=limits)
        except errors.LeylineError as err:
            assert isinstance(err, expected), (type(err), expected)
            raised += 1
    # Noise that happens to parse must still not pass: every case raised.
    assert raised == len(cases)
