"""The Tamiyo recording format (``.tyrec``): a portable file of Kafka records, no pickle.

`tamiyo topic record` writes it, `tamiyo topic replay --from-file` re-publishes
it; any language can read it with a dozen lines.  All integers little-endian.

File::

    magic      8 bytes   b"TYREC\\x00\\x01\\n"   (format name, NUL, format version 1, newline)
    hlen       u32       length of the header
    header     hlen bytes UTF-8 JSON object, e.g.
                         {"format": "tamiyo-recording", "version": 1, "created_at_ms": ...,
                          "source_topics": ["tamiyo.run1.batches"], "tool": "tamiyo topic record"}
    record*    until end of file

Record::

    blen       u32       length of the body that follows
    crc32      u32       zlib.crc32 of the body
    body:
      timestamp_ms   i64   the record's Kafka timestamp (-1: none)
      partition      i32   original partition
      offset         i64   original offset
      topic_len      u16   then topic_len bytes: the original topic, UTF-8
      key_len        i32   -1: null key; then key_len bytes
      value_len      i32   -1: null value (tombstone); then value_len bytes (the EventEnvelope, verbatim)
      n_headers      u16   then per header:
        name_len     u16   then name_len bytes UTF-8
        hval_len     i32   -1: null; then hval_len bytes

Keys, values and headers are stored byte-for-byte.  A reader stops cleanly at
end of file; a truncated or corrupt record (length or CRC mismatch) raises
`RecordingError` naming the record's index and file position, after every
record before it was delivered.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

MAGIC = b"TYREC\x00\x01\n"
FORMAT_VERSION = 1
MAX_RECORD_BYTES = 1 << 30  # refuse absurd lengths from a corrupt file before allocating

_U32 = struct.Struct("<I")
_HEAD = struct.Struct("<qiq")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")


class RecordingError(ValueError):
    """The file is not a Tamiyo recording, or a record in it is truncated or corrupt."""


@dataclass
class RecordedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def _opt_bytes(data: bytes | None) -> bytes:
    if data is None:
        return _I32.pack(-1)
    return _I32.pack(len(data)) + bytes(data)


def encode_record(rec: RecordedRecord) -> bytes:
    """One record as it appears in the file (length + CRC + body)."""
    topic = rec.topic.encode("utf-8")
    parts = [
        _HEAD.pack(rec.timestamp_ms if rec.timestamp_ms is not None else -1, rec.partition, rec.offset),
        _U16.pack(len(topic)),
        topic,
        _opt_bytes(rec.key),
        _opt_bytes(rec.value),
        _U16.pack(len(rec.headers)),
    ]
    for name, value in rec.headers:
        raw = name.encode("utf-8")
        parts += [_U16.pack(len(raw)), raw, _opt_bytes(value)]
    body = b"".join(parts)
    return _U32.pack(len(body)) + _U32.pack(zlib.crc32(body)) + body


def decode_body(body: bytes) -> RecordedRecord:
    mv = memoryview(body)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(mv):
            raise RecordingError("record body is shorter than its fields say")
        out = bytes(mv[pos : pos + n])
        pos += n
        return out

    def opt() -> bytes | None:
        (n,) = _I32.unpack(take(4))
        return None if n == -1 else take(n)

    ts, partition, offset = _HEAD.unpack(take(_HEAD.size))
    (tlen,) = _U16.unpack(take(2))
    topic = take(tlen).decode("utf-8")
    key = opt()
    value = opt()
    (nh,) = _U16.unpack(take(2))
    headers = []
    for _ in range(nh):
        (nlen,) = _U16.unpack(take(2))
        name = take(nlen).decode("utf-8")
        headers.append((name, opt()))
    if pos != len(mv):
        raise RecordingError("record body has trailing bytes")
    return RecordedRecord(topic, partition, offset, ts, key, value, headers)


class RecordingWriter:
    """Append records to a ``.tyrec`` file (use as a context manager)."""

    def __init__(self, path: str, source_topics: Sequence[str] = (), extra: dict | None = None) -> None:
        self.path = path
        self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        header = {
            "format": "tamiyo-recording",
            "version": FORMAT_VERSION,
            "created_at_ms": int(time.time() * 1000),
            "source_topics": list(source_topics),
            "tool": "tamiyo topic record",
            **(extra or {}),
        }
        raw = json.dumps(header, sort_keys=True).encode("utf-8")
        self._f.write(MAGIC + _U32.pack(len(raw)) + raw)
        self.count = 0
        self.bytes = 0

    def write(self, rec: RecordedRecord) -> None:
        data = encode_record(rec)
        self._f.write(data)
        self.count += 1
        self.bytes += len(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_header(f: BinaryIO) -> dict:
    magic = f.read(len(MAGIC))
    if magic[:6] != MAGIC[:6]:
        raise RecordingError("not a Tamiyo recording (bad magic)")
    if magic != MAGIC:
        raise RecordingError(f"recording format version {magic[6] if len(magic) > 6 else '?'} is not supported")
    raw = f.read(4)
    if len(raw) != 4:
        raise RecordingError("truncated header")
    (hlen,) = _U32.unpack(raw)
    body = f.read(hlen)
    if len(body) != hlen:
        raise RecordingError("truncated header")
    try:
        header = json.loads(body.decode("utf-8"))
    except ValueError as err:
        raise RecordingError(f"header is not JSON: {err}") from err
    if not isinstance(header, dict):
        raise RecordingError("header is not a JSON object")
    return header


def iter_records(f: BinaryIO) -> Iterator[RecordedRecord]:
    """Records of an open file positioned after the header (see `read_header`)."""
    index = 0
    while True:
        where = f.tell()
        prefix = f.read(8)
        if not prefix:
            return
        if len(prefix) != 8:
            raise RecordingError(f"record {index} at byte {where}: truncated length/CRC")
        blen, crc = struct.unpack("<II", prefix)
        if blen > MAX_RECORD_BYTES:
            raise RecordingError(f"record {index} at byte {where}: length {blen} is implausible")
        body = f.read(blen)
        if len(body) != blen:
            raise RecordingError(f"record {index} at byte {where}: truncated body ({len(body)} of {blen} bytes)")
        if zlib.crc32(body) != crc:
            raise RecordingError(f"record {index} at byte {where}: CRC mismatch")
        try:
            yield decode_body(body)
        except RecordingError as err:
            raise RecordingError(f"record {index} at byte {where}: {err}") from err
        index += 1


def read_recording(path: str) -> tuple[dict, list[RecordedRecord]]:
    """Header and every record of a (small) recording; large ones: `open_recording`."""
    with open(path, "rb") as f:
        header = read_header(f)
        return header, list(iter_records(f))


class open_recording:
    """``with open_recording(path) as (header, records): ...`` streams records lazily."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "rb")  # noqa: SIM115

    def __enter__(self) -> tuple[dict, Iterator[RecordedRecord]]:
        try:
            header = read_header(self._f)
        except BaseException:
            self._f.close()
            raise
        return header, iter_records(self._f)

    def __exit__(self, *exc: object) -> None:
        self._f.close()
