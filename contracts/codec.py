"""Leyline codec: wrap payload messages in `EventEnvelope`s and unwrap them safely.

Decoding is the security boundary of every service, so it checks, in order:
record size cap → envelope parse → required envelope fields → schema version →
payload type → content encoding → declared size cap → bounded decompression →
declared-vs-actual size → payload parse → payload validation (`validation.py`: finite
floats, consistent array sizes).  Every failure raises a subclass of `LeylineError`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import zstandard
from google.protobuf.message import DecodeError, Message

from tamiyo.contracts.errors import (
    LeylineError,
    MalformedRecordError,
    OversizeError,
    SchemaVersionError,
    SizeMismatchError,
    UnknownPayloadTypeError,
    UnsupportedEncodingError,
)
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.validation import validate_payload

SCHEMA_VERSION = 1
# Versions this reader decodes.  A new major version gets its own number and
# readers list every version whose field layout they understand.
COMPATIBLE_SCHEMA_VERSIONS = frozenset({1})

PAYLOAD_CLASSES: tuple[type[Message], ...] = (
    pb.SystemStatePacket,
    pb.SeedState,
    pb.HardwareContext,
    pb.AdaptationCommand,
    pb.TelemetryPacket,
    pb.GraphState,
    pb.Trajectory,
    pb.SampledBatch,
    pb.PriorityUpdate,
    pb.PolicySnapshot,
    pb.DeadLetter,
)
PAYLOAD_TYPES: dict[str, type[Message]] = {cls.DESCRIPTOR.full_name: cls for cls in PAYLOAD_CLASSES}

M = TypeVar("M", bound=Message)
RecordValue = bytes | bytearray | memoryview | None  # a Kafka record value, as it arrives


@dataclass(frozen=True)
class CodecLimits:
    """Caps applied while decoding; defaults suit batches of host-sized trajectories."""

    max_record_bytes: int = 64 << 20  # the whole envelope as it comes off Kafka
    max_payload_bytes: int = 256 << 20  # a payload after decompression (bomb guard)
    compress_threshold: int = 512  # payloads at least this large are zstd-compressed
    zstd_level: int = 3


DEFAULT_LIMITS = CodecLimits()


@dataclass
class Decoded(Generic[M]):
    envelope: pb.EventEnvelope
    payload: M


# zstd contexts are not thread-safe; keep one pair per thread.
_zstd_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_zstd_local, "compressors", None)
    if cache is None:
        cache = _zstd_local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_zstd_local, "decompressor", None)
    if d is None:
        d = _zstd_local.decompressor = zstandard.ZstdDecompressor()
    return d


def compress(data: bytes, level: int = DEFAULT_LIMITS.zstd_level) -> bytes:
    return _compressor(level).compress(data)


def decode_payload_bytes(data: bytes, encoding: int, declared_size: int, limits: CodecLimits = DEFAULT_LIMITS) -> bytes:
    """Undo a content encoding with the bomb and size checks; returns the raw payload bytes."""
    if declared_size > limits.max_payload_bytes:
        raise OversizeError(f"declared payload size {declared_size} exceeds cap {limits.max_payload_bytes}")
    if encoding == pb.CONTENT_ENCODING_IDENTITY:
        raw = data
    elif encoding == pb.CONTENT_ENCODING_ZSTD:
        raw = _bounded_zstd_decompress(data, limits.max_payload_bytes)
    else:
        raise UnsupportedEncodingError(f"content encoding {encoding} is not supported")
    if len(raw) != declared_size:
        raise SizeMismatchError(f"declared payload size {declared_size}, actual {len(raw)}")
    return raw


def _bounded_zstd_decompress(data: bytes, cap: int) -> bytes:
    try:
        content_size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as err:
        raise MalformedRecordError(f"not a zstd frame: {err}") from err
    if content_size > cap:
        raise OversizeError(f"zstd frame declares {content_size} bytes, cap is {cap}")
    try:
        if content_size >= 0:
            return _decompressor().decompress(data, max_output_size=content_size)
        # Unknown content size: stream at most cap+1 bytes so a bomb cannot blow up memory.
        reader = _decompressor().stream_reader(data)
        out = reader.read(cap + 1)
    except zstandard.ZstdError as err:
        raise MalformedRecordError(f"corrupt zstd payload: {err}") from err
    if len(out) > cap:
        raise OversizeError(f"zstd payload decompresses beyond cap {cap}")
    return out


def encode_payload_bytes(raw: bytes, limits: CodecLimits = DEFAULT_LIMITS) -> tuple[pb.ContentEncoding, bytes]:
    """Choose identity or zstd for ``raw``; returns (encoding, encoded bytes)."""
    if len(raw) >= limits.compress_threshold:
        packed = compress(raw, limits.zstd_level)
        if len(packed) < len(raw):
            return pb.CONTENT_ENCODING_ZSTD, packed
    return pb.CONTENT_ENCODING_IDENTITY, raw


def new_event_id() -> str:
    return os.urandom(12).hex()


def encode_envelope(
    payload: Message,
    *,
    source: str,
    producer_id: str,
    sequence: int,
    correlation_id: str = "",
    limits: CodecLimits = DEFAULT_LIMITS,
) -> bytes:
    """Serialize ``payload`` into an EventEnvelope record value."""
    type_name = payload.DESCRIPTOR.full_name
    if type_name not in PAYLOAD_TYPES:
        raise UnknownPayloadTypeError(f"{type_name} is not a Leyline payload type")
    raw = payload.SerializeToString()
    encoding, body = encode_payload_bytes(raw, limits)
    env = pb.EventEnvelope(
        event_id=new_event_id(),
        payload_type=type_name,
        schema_version=SCHEMA_VERSION,
        source=source,
        created_at_ns=time.time_ns(),
        producer_id=producer_id,
        sequence=sequence,
        content_encoding=encoding,
        uncompressed_size=len(raw),
        payload=body,
        correlation_id=correlation_id,
    )
    return env.SerializeToString()


class EnvelopeEncoder:
    """Stamps envelopes for one producer with strictly increasing sequence numbers."""

    def __init__(
        self,
        source: str,
        producer_id: str | None = None,
        *,
        correlation_id: str = "",
        start_sequence: int = 0,
        limits: CodecLimits = DEFAULT_LIMITS,
    ) -> None:
        self.source = source
        self.producer_id = producer_id or f"{source}-{os.urandom(6).hex()}"
        self.correlation_id = correlation_id
        self.limits = limits
        self._next = start_sequence
        self._lock = threading.Lock()

    @property
    def next_sequence(self) -> int:
        return self._next

    def encode(self, payload: Message) -> bytes:
        with self._lock:
            seq = self._next
            self._next += 1
        return encode_envelope(
            payload,
            source=self.source,
            producer_id=self.producer_id,
            sequence=seq,
            correlation_id=self.correlation_id,
            limits=self.limits,
        )


def parse_envelope(data: RecordValue, limits: CodecLimits = DEFAULT_LIMITS) -> pb.EventEnvelope:
    """Parse and check the envelope itself (not the payload)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedRecordError(f"record value is {type(data).__name__}, not bytes")
    if len(data) > limits.max_record_bytes:
        raise OversizeError(f"record of {len(data)} bytes exceeds cap {limits.max_record_bytes}")
    env = pb.EventEnvelope()
    try:
        env.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as err:
        raise MalformedRecordError(f"not an EventEnvelope: {err}") from err
    # Protobuf parses many random byte strings "successfully"; the required
    # fields are what tell an envelope from noise.
    if not env.event_id or not env.payload_type or env.schema_version == 0:
        raise MalformedRecordError("envelope lacks event_id, payload_type or schema_version")
    if env.schema_version not in COMPATIBLE_SCHEMA_VERSIONS:
        raise SchemaVersionError(f"schema version {env.schema_version} not in {sorted(COMPATIBLE_SCHEMA_VERSIONS)}")
    if env.payload_type not in PAYLOAD_TYPES:
        raise UnknownPayloadTypeError(f"unknown payload type {env.payload_type!r}")
    return env


@overload
def decode_envelope(
    data: RecordValue, *, expect: type[M], limits: CodecLimits = ..., validate: bool = ...
) -> Decoded[M]: ...


@overload
def decode_envelope(
    data: RecordValue,
    *,
    expect: tuple[type[Message], ...] | None = None,
    limits: CodecLimits = ...,
    validate: bool = ...,
) -> Decoded[Message]: ...


def decode_envelope(
    data: RecordValue,
    *,
    expect: type[Message] | tuple[type[Message], ...] | None = None,
    limits: CodecLimits = DEFAULT_LIMITS,
    validate: bool = True,
) -> Decoded[Any]:
    """Decode a record value into (envelope, typed payload), or raise a `LeylineError`.

    ``data`` is whatever came off the wire: anything but bytes (e.g. a tombstone's None) is refused
    as malformed."""
    env = parse_envelope(data, limits)
    cls = PAYLOAD_TYPES[env.payload_type]
    if expect is not None:
        allowed = expect if isinstance(expect, tuple) else (expect,)
        if cls not in allowed:
            names = ", ".join(c.DESCRIPTOR.full_name for c in allowed)
            raise UnknownPayloadTypeError(f"expected {names}, got {env.payload_type}")
    raw = decode_payload_bytes(env.payload, env.content_encoding, env.uncompressed_size, limits)
    payload = parse_message(cls, raw)
    if validate:
        validate_payload(payload)
    return Decoded(env, payload)


def parse_message(cls: type[M], raw: bytes) -> M:
    msg = cls()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise MalformedRecordError(f"payload is not a valid {cls.DESCRIPTOR.full_name}: {err}") from err
    return msg


__all__ = [
    "COMPATIBLE_SCHEMA_VERSIONS",
    "DEFAULT_LIMITS",
    "PAYLOAD_TYPES",
    "SCHEMA_VERSION",
    "CodecLimits",
    "Decoded",
    "EnvelopeEncoder",
    "LeylineError",
    "compress",
    "decode_envelope",
    "decode_payload_bytes",
    "encode_envelope",
    "encode_payload_bytes",
    "parse_envelope",
    "parse_message",
]
