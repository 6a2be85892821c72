"""One exception hierarchy for everything that can be wrong with bytes off the wire.

Services catch `LeylineError`, send the record to `deadletter` with
``type(err).__name__`` as the reason, and keep running.
"""

from __future__ import annotations


class LeylineError(Exception):
    """Base class: a record or payload that must not be processed."""


class MalformedRecordError(LeylineError):
    """Truncated or garbage bytes: not a parseable Leyline message."""


class UnknownPayloadTypeError(LeylineError):
    """The envelope names a payload type this reader does not know."""


class SchemaVersionError(LeylineError):
    """The envelope's schema version is not one this reader can decode."""


class UnsupportedEncodingError(LeylineError):
    """The envelope's content encoding is unknown."""


class SizeMismatchError(LeylineError):
    """The declared payload size does not match the actual decoded size."""


class OversizeError(LeylineError):
    """A record, or its decompressed payload, is larger than the configured cap (e.g. a zstd bomb)."""


class NonFiniteError(LeylineError):
    """A float the contract requires to be finite is NaN or infinite."""


class InvalidFieldError(LeylineError):
    """A field is present but its value breaks the contract (shape, range, consistency)."""


class SignatureError(LeylineError):
    """A signed payload (policy snapshot) failed its integrity or authenticity check."""
