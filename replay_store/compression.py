"""zstd compression of trajectory payloads, optionally with a trained dictionary.

Host-sized graph unrolls are a few kilobytes of highly repetitive columns; a
dictionary trained on a sample of them gives zstd the shared structure up front,
which helps most for small payloads.  The store itself keeps opaque bytes; this
is the tool producers (or the replay service) use to make them.

Decompression is bounded by ``max_output_bytes`` (a decompression bomb raises
instead of exhausting memory).
"""

from __future__ import annotations

from collections.abc import Sequence

import zstandard as zstd


def train_dictionary(samples: Sequence[bytes], dict_size: int = 16_384) -> bytes:
    """A zstd dictionary trained on raw (uncompressed) sample payloads."""
    if len(samples) < 8:
        raise ValueError("need at least 8 samples to train a dictionary")
    return zstd.train_dictionary(dict_size, list(samples)).as_bytes()


class PayloadCompressor:
    def __init__(self, level: int = 3, dictionary: bytes | None = None, max_output_bytes: int = 64 << 20) -> None:
        self.level = level
        self.dictionary = dictionary
        self.max_output_bytes = max_output_bytes
        zdict = zstd.ZstdCompressionDict(dictionary) if dictionary else None
        # Content size in the frame header lets decompress() size its output exactly.
        self._compressor = zstd.ZstdCompressor(level=level, dict_data=zdict, write_content_size=True)
        self._decompressor = zstd.ZstdDecompressor(dict_data=zdict)

    def compress(self, payload: bytes) -> bytes:
        return self._compressor.compress(payload)

    def compress_many(self, payloads: Sequence[bytes]) -> list[bytes]:
        return [self._compressor.compress(p) for p in payloads]

    def decompress(self, payload: bytes) -> bytes:
        size = zstd.frame_content_size(payload)
        if size < 0 or size > self.max_output_bytes:
            raise ValueError(f"frame declares {size} bytes (limit {self.max_output_bytes})")
        return self._decompressor.decompress(payload, max_output_size=self.max_output_bytes)

    def decompress_many(self, payloads: Sequence[bytes]) -> list[bytes]:
        return [self.decompress(p) for p in payloads]
