"""TrajectoryStorage: count and byte budgets, FIFO eviction, dedup; payload compression."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from tamiyo.producers.sample_unrolls import compressed_payloads
from tamiyo.replay_store.compression import PayloadCompressor, train_dictionary
from tamiyo.replay_store.storage import ItemMeta, TrajectoryStorage


def _contents(st: TrajectoryStorage) -> list[bytes]:
    return st.payloads[st.slots_in_order()].tolist()


def test_count_budget_evicts_oldest_first_across_wrap_around() -> None:
    st = TrajectoryStorage(5)
    for i in range(13):
        st.put([bytes([i])])
    assert _contents(st) == [bytes([i]) for i in range(8, 13)]
    assert st.evicted_total == 8 and st.size == 5


def test_byte_budget_binds_before_count() -> None:
    st = TrajectoryStorage(100, max_bytes=1000)
    st.put([b"a" * 400, b"b" * 400])
    result = st.put([b"c" * 300])  # 1100 bytes: "a" must go
    assert _contents(st) == [b"b" * 400, b"c" * 300]
    assert st.total_bytes == 700 and result.evicted_slots.size == 1 and result.vacated_slots.size == 1
    st.put([b"d" * 100] * 3)  # exactly 1000: nothing more goes
    assert st.total_bytes == 1000 and st.size == 5
    # One large batch that alone overflows: its own oldest items never land.
    result = st.put([bytes([i]) * 300 for i in range(5)])
    assert (result.slots[:2] == -1).all() and (result.slots[2:] >= 0).all()
    assert _contents(st) == [bytes([i]) * 300 for i in range(2, 5)]
    assert st.evicted_total == 1 + 5 + 2  # "a", the five small/"b"/"c" items, and two that never landed
    assert st.total_bytes == int(st.nbytes.sum()) == 900


def test_byte_budget_eviction_over_many_small_items_and_a_large_one() -> None:
    st = TrajectoryStorage(10_000, max_bytes=50_000)
    st.put([b"s" * 10] * 5000)  # 50,000 bytes
    st.put([b"L" * 30_000])  # must evict 3000 small items (spans several eviction chunks)
    assert st.size == 2001 and st.total_bytes == 50_000
    assert _contents(st)[-1] == b"L" * 30_000


def test_oversized_items_are_refused_and_counted() -> None:
    st = TrajectoryStorage(10, max_bytes=100)
    result = st.put([b"x" * 101, b"y" * 50])
    assert result.slots[0] == -1 and result.slots[1] >= 0 and result.oversized == 1
    assert st.oversized_total == 1 and _contents(st) == [b"y" * 50]


def test_duplicates_are_ignored_within_a_batch_and_against_stored_items() -> None:
    st = TrajectoryStorage(3)
    meta = ItemMeta(producer_ids=["a", "a", "b", "a"], sequences=[0, 1, 0, 0])
    result = st.put([b"1", b"2", b"3", b"4"], meta)
    assert result.duplicates == 1 and result.slots[3] == -1
    result = st.put([b"5", b"6"], ItemMeta(producer_ids=["b", "c"], sequences=[0, 0]))
    assert result.slots[0] == -1 and result.slots[1] >= 0  # ("b", 0) still stored; "c" evicts ("a", 0)
    assert st.duplicates_total == 2
    # ("a", 0) was evicted, so it is no longer a duplicate (dedup window = what is stored).
    result = st.put([b"7"], ItemMeta(producer_ids=["a"], sequences=[0]))
    assert result.slots[0] >= 0
    assert st.producer_ids_of(st.slots_in_order()) == ["b", "c", "a"]


def test_metadata_columns_are_stored_per_item() -> None:
    clock = iter([100.0, 200.0])
    st = TrajectoryStorage(10, clock=lambda: next(clock))
    st.put([b"a", b"b"], ItemMeta(producer_ids=["p", "q"], sequences=[3, 4], policy_versions=[7, 8], lengths=5))
    st.put([b"c"], ItemMeta(policy_versions=[9]))
    order = st.slots_in_order()
    assert st.sequences[order].tolist() == [3, 4, -1]
    assert st.policy_versions[order].tolist() == [7, 8, 9]
    assert st.lengths[order].tolist() == [5, 5, 0]
    assert st.insert_times[order].tolist() == [100.0, 100.0, 200.0]
    assert st.item_ids[order].tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        st.put([b"d"], ItemMeta(producer_ids=["p"]))  # a dedup key needs both halves


def test_pop_oldest_frees_slots_in_order() -> None:
    st = TrajectoryStorage(4)
    st.put([b"a", b"b", b"c"])
    st.pop_oldest(2)
    assert _contents(st) == [b"c"] and st.total_bytes == 1
    st.put([b"d", b"e", b"f"])
    assert _contents(st) == [b"c", b"d", b"e", b"f"] and st.evicted_total == 0


def test_realistic_trajectories_compress_below_the_target_ratio() -> None:
    raw, packed = compressed_payloads(48, seed=1)
    ratio = sum(map(len, packed)) / sum(map(len, raw))
    assert ratio <= 0.3, ratio
    compressor = PayloadCompressor(level=3, dictionary=train_dictionary(raw[:32], 8192))
    with_dict = compressor.compress_many(raw[32:])
    assert compressor.decompress_many(with_dict) == raw[32:]
    assert sum(map(len, with_dict)) <= sum(map(len, packed[32:]))


def test_decompression_refuses_bombs_and_unknown_sizes() -> None:
    compressor = PayloadCompressor(max_output_bytes=1000)
    with pytest.raises(ValueError):
        compressor.decompress(compressor.compress(b"\0" * 5000))
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc")
    with pytest.raises(ValueError):
        compressor.decompress(streamed)
    assert compressor.decompress(compressor.compress(np.arange(10).tobytes())) == np.arange(10).tobytes()
