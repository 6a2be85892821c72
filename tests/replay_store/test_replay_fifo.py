"""OnPolicyFifo: exactly once, in order; policy-lag drops counted; redeliveries ignored."""

from __future__ import annotations

import threading
import time

import numpy as np

from tamiyo.replay_store.fifo import OnPolicyFifo
from tamiyo.replay_store.storage import ItemMeta


def _put(fifo: OnPolicyFifo, producer: str, sequences: range, version: int) -> np.ndarray:
    payloads = [f"{producer}:{s}".encode() for s in sequences]
    meta = ItemMeta(producer_ids=[producer] * len(payloads), sequences=list(sequences), policy_versions=version)
    return fifo.put(payloads, meta)


def test_every_item_is_delivered_exactly_once_in_arrival_order() -> None:
    fifo = OnPolicyFifo(1000, max_policy_lag=10)
    expected = []
    rng = np.random.default_rng(0)
    next_seq = {"a": 0, "b": 0, "c": 0}
    delivered: list[bytes] = []
    for _ in range(60):
        producer = str(rng.choice(list(next_seq)))
        n = int(rng.integers(1, 9))
        seqs = range(next_seq[producer], next_seq[producer] + n)
        next_seq[producer] += n
        _put(fifo, producer, seqs, version=1)
        expected += [f"{producer}:{s}".encode() for s in seqs]
        if rng.random() < 0.5:
            delivered += fifo.take(int(rng.integers(1, 12)), current_policy_version=1).payloads
    while len(fifo):
        delivered += fifo.take(7, current_policy_version=1).payloads
    assert delivered == expected
    assert fifo.take(5, 1).payloads == []
    assert fifo.stats()["delivered_total"] == len(expected)


def test_items_beyond_the_policy_lag_are_dropped_and_counted() -> None:
    fifo = OnPolicyFifo(100, max_policy_lag=2)
    _put(fifo, "a", range(0, 3), version=5)
    _put(fifo, "a", range(3, 6), version=8)
    _put(fifo, "a", range(6, 8), version=9)
    batch = fifo.take(4, current_policy_version=10)  # lag 5 (dropped), lag 2 and 1 (kept)
    assert batch.payloads == [b"a:3", b"a:4", b"a:5", b"a:6"]
    assert batch.policy_versions.tolist() == [8, 8, 8, 9]
    assert batch.sequences.tolist() == [3, 4, 5, 6] and batch.producer_ids == ["a"] * 4
    stats = fifo.stats()
    assert stats["dropped_stale_total"] == 3 and stats["delivered_total"] == 4
    assert fifo.take(10, current_policy_version=12).payloads == []  # a:7 now lags 3
    assert fifo.stats()["dropped_stale_total"] == 4 and len(fifo) == 0


def test_redelivery_of_taken_or_queued_items_is_ignored() -> None:
    fifo = OnPolicyFifo(100, max_policy_lag=0)
    _put(fifo, "a", range(0, 4), version=0)
    assert fifo.take(2, 0).payloads == [b"a:0", b"a:1"]
    slots = _put(fifo, "a", range(0, 6), version=0)  # at-least-once upstream: the whole range again
    assert (slots[:4] == -1).all() and (slots[4:] >= 0).all()
    assert fifo.take(100, 0).payloads == [b"a:2", b"a:3", b"a:4", b"a:5"]
    stats = fifo.stats()
    assert stats["redelivered_total"] == 2 and stats["duplicates_total"] == 2


def test_overflow_evicts_the_oldest_and_counts_it() -> None:
    fifo = OnPolicyFifo(4, max_policy_lag=0)
    _put(fifo, "a", range(0, 3), version=0)
    assert fifo.can_insert(1) and not fifo.can_insert(2)
    _put(fifo, "a", range(3, 6), version=0)
    assert fifo.dropped_overflow_total == 2
    assert fifo.take(10, 0).payloads == [b"a:2", b"a:3", b"a:4", b"a:5"]


def test_one_writer_and_one_reader_thread_keep_exactly_once_in_order() -> None:
    fifo = OnPolicyFifo(10_000, max_policy_lag=1_000)
    stop = time.monotonic() + 1.0
    written: list[bytes] = []
    taken: list[bytes] = []

    def writer() -> None:
        seq = 0
        while time.monotonic() < stop:
            if not fifo.can_insert(16):  # back-pressure: never overflow (that would drop items)
                time.sleep(0.001)
                continue
            batch = range(seq, seq + 16)
            _put(fifo, "w", batch, version=0)
            _put(fifo, "w", batch, version=0)  # at-least-once: every batch arrives twice
            written.extend(f"w:{s}".encode() for s in batch)
            seq += 16

    def reader() -> None:
        while time.monotonic() < stop + 0.2:
            taken.extend(fifo.take(37, current_policy_version=0).payloads)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    taken.extend(fifo.take(100_000, current_policy_version=0).payloads)
    assert taken == written and len(written) > 0
    stats = fifo.stats()
    assert stats["dropped_overflow_total"] == 0
    assert stats["duplicates_total"] + stats["redelivered_total"] == len(written)
