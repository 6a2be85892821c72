"""Leyline: Tamiyo's contracts (protobuf messages, envelope codec, packing, topic names)."""

from tamiyo.contracts import codec, errors, packing
from tamiyo.contracts.codec import SCHEMA_VERSION, CodecLimits, Decoded, EnvelopeEncoder, decode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.proto import leyline_pb2

__all__ = [
    "SCHEMA_VERSION",
    "CodecLimits",
    "Decoded",
    "EnvelopeEncoder",
    "LeylineError",
    "codec",
    "decode_envelope",
    "errors",
    "leyline_pb2",
    "packing",
]
