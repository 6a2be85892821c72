"""Replay-store benchmark: our PrioritizedReplay vs TorchRL's PrioritizedReplayBuffer, same work.

Prints ONE JSON object.  Both buffers: capacity 100,000 (filled first), alpha 0.6,
beta 0.4, items = the same realistic compressed host-graph trajectories (Leyline
``Trajectory`` protobuf + zstd, ~3.5 KB each, shared by reference), new items at
the max priority.  One *op* is one loop iteration of the replay service's steady
state: insert 64, sample 128, update 128 priorities (the same seeded priorities for
both).  TorchRL stores the payload objects in a ``ListStorage`` (its storage for
arbitrary Python objects) and samples through its C++ segment tree.

Rounds alternate between the two buffers and the median round is reported, so
both see the same machine noise.  No timing is asserted anywhere.

    python bench/replay.py [--iterations 300] [--rounds 5] [--capacity 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tamiyo.producers.sample_unrolls import compressed_payloads
from tamiyo.replay_store.compression import PayloadCompressor, train_dictionary
from tamiyo.replay_store.prioritized import PrioritizedReplay
from tamiyo.replay_store.storage import ItemMeta

ALPHA, BETA = 0.6, 0.4
INSERT, SAMPLE = 64, 128


class Workload:
    """The pre-generated inputs both buffers consume, identically."""

    def __init__(self, pool: list[bytes], iterations: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.pool = pool
        self.priorities = rng.exponential(1.0, (iterations, SAMPLE))
        self.iterations = iterations

    def inserts(self, step: int) -> list[bytes]:
        start = (step * INSERT) % len(self.pool)
        return [self.pool[(start + i) % len(self.pool)] for i in range(INSERT)]


def _fill_ours(replay: PrioritizedReplay, work: Workload, capacity: int) -> None:
    for step in range(capacity // INSERT + 1):
        replay.add(work.inserts(step))


def _loop_ours(replay: PrioritizedReplay, work: Workload) -> dict[str, float]:
    batches = [work.inserts(i) for i in range(work.iterations)]
    phase = {"insert": 0.0, "sample": 0.0, "update": 0.0}
    clock = time.perf_counter
    cpu_start, start = time.process_time(), clock()
    for i in range(work.iterations):
        t0 = clock()
        replay.add(batches[i])
        t1 = clock()
        sample = replay.sample(SAMPLE, BETA)
        t2 = clock()
        replay.update_priorities(sample.indices, work.priorities[i], sample.keys)
        t3 = clock()
        phase["insert"] += t1 - t0
        phase["sample"] += t2 - t1
        phase["update"] += t3 - t2
    elapsed, cpu = clock() - start, time.process_time() - cpu_start
    return {"seconds": elapsed, "cpu_seconds": cpu, **phase}


def _loop_ours_with_meta(replay: PrioritizedReplay, work: Workload, first_sequence: int) -> dict[str, float]:
    """The replay service's real path: dedup keys and metadata on every insert."""
    producers = np.array([f"actor-{i % 16}" for i in range(INSERT)])
    batches = [work.inserts(i) for i in range(work.iterations)]
    start = time.perf_counter()
    for i in range(work.iterations):
        seq = first_sequence + i
        meta = ItemMeta(
            producer_ids=producers,
            sequences=seq * 4 + np.arange(INSERT) // 16,  # unique per producer: no duplicates here
            policy_versions=np.full(INSERT, seq // 10),
            lengths=np.full(INSERT, 20),
        )
        replay.add(batches[i], meta=meta)
        sample = replay.sample(SAMPLE, BETA)
        replay.update_priorities(sample.indices, work.priorities[i], sample.keys)
    return {"seconds": time.perf_counter() - start}


def _torchrl(capacity: int) -> tuple[object | None, str | None]:
    try:
        from torchrl.data import ListStorage, PrioritizedReplayBuffer
    except ImportError as err:  # bench-only extra: report instead of failing
        return None, f"torchrl not installed ({err}); pip install -e '.[bench]'"
    buffer = PrioritizedReplayBuffer(
        alpha=ALPHA,
        beta=BETA,
        storage=ListStorage(capacity),
        batch_size=SAMPLE,
        collate_fn=lambda items: items,  # payloads are bytes: keep the list, like ours
    )
    return buffer, None


def _fill_torchrl(buffer: Any, work: Workload, capacity: int) -> None:
    for step in range(capacity // INSERT + 1):
        buffer.extend(work.inserts(step))


def _loop_torchrl(buffer: Any, work: Workload) -> dict[str, float]:
    import torch

    batches = [work.inserts(i) for i in range(work.iterations)]
    priorities = torch.from_numpy(work.priorities.astype(np.float32))  # its tree is float32
    phase = {"insert": 0.0, "sample": 0.0, "update": 0.0}
    clock = time.perf_counter
    cpu_start, start = time.process_time(), clock()
    for i in range(work.iterations):
        t0 = clock()
        buffer.extend(batches[i])
        t1 = clock()
        _payloads, info = buffer.sample(SAMPLE, return_info=True)
        t2 = clock()
        buffer.update_priority(info["index"], priorities[i])
        t3 = clock()
        phase["insert"] += t1 - t0
        phase["sample"] += t2 - t1
        phase["update"] += t3 - t2
    elapsed, cpu = clock() - start, time.process_time() - cpu_start
    return {"seconds": elapsed, "cpu_seconds": cpu, **phase}


def _median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    return min(rounds, key=lambda r: abs(r["seconds"] - statistics.median(x["seconds"] for x in rounds)))


def _per_iteration_us(result: dict[str, float], iterations: int) -> dict[str, float]:
    return {k: round(v / iterations * 1e6, 1) for k, v in result.items() if not k.endswith("seconds")}


def _storage_bytes_per_item(replay: PrioritizedReplay) -> tuple[float, float]:
    """(payload + per-item metadata and tree) bytes per stored item, and the overhead alone."""
    st = replay.storage
    n = max(len(st), 1)
    # Every per-slot column (the object column of payloads holds one pointer per slot).
    columns = [v for v in vars(st).values() if isinstance(v, np.ndarray) and v.shape == (st.capacity,)]
    tree_bytes = replay.tree._sum.nbytes + replay.tree._min_leaves.nbytes
    overhead = (sum(c.nbytes for c in columns) + tree_bytes) / st.capacity
    bytes_object_header = sys.getsizeof(b"") - 1  # CPython bytes header per payload object
    return st.total_bytes / n + overhead + bytes_object_header, overhead + bytes_object_header


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=300, help="loop iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", type=int, default=512, help="distinct trajectories generated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torchrl", action="store_true", help="skip the TorchRL side (smoke runs)")
    args = parser.parse_args()

    raw, packed = compressed_payloads(args.pool, seed=args.seed)
    compression_ratio = sum(map(len, packed)) / sum(map(len, raw))
    half = args.pool // 2
    with_dict = PayloadCompressor(3, train_dictionary(raw[:half], 16_384)).compress_many(raw[half:])
    compression_ratio_dict = sum(map(len, with_dict)) / sum(map(len, raw[half:]))

    work = Workload(packed, args.iterations, args.seed)
    ours = PrioritizedReplay(args.capacity, alpha=ALPHA, seed=args.seed)
    fill_ours_s = _timed(lambda: _fill_ours(ours, work, args.capacity))
    theirs, torchrl_error = (None, "skipped (--no-torchrl)") if args.no_torchrl else _torchrl(args.capacity)
    fill_theirs_s = _timed(lambda: _fill_torchrl(theirs, work, args.capacity)) if theirs is not None else None

    # Warm-up, then alternate rounds so both see the same machine noise.
    _loop_ours(ours, Workload(packed, 20, args.seed + 1))
    if theirs is not None:
        _loop_torchrl(theirs, Workload(packed, 20, args.seed + 1))
    ours_rounds, theirs_rounds = [], []
    for _ in range(args.rounds):
        ours_rounds.append(_loop_ours(ours, work))
        if theirs is not None:
            theirs_rounds.append(_loop_torchrl(theirs, work))
    with_meta = PrioritizedReplay(args.capacity, alpha=ALPHA, seed=args.seed)
    _fill_ours(with_meta, work, args.capacity)
    meta_rounds = [_loop_ours_with_meta(with_meta, work, r * args.iterations) for r in range(args.rounds)]

    ours_med = _median_round(ours_rounds)
    ops_per_s = args.iterations / ours_med["seconds"]
    result: dict[str, object] = {
        "bench": "replay",
        "op": f"insert {INSERT} + sample {SAMPLE} + update {SAMPLE} (one replay-service loop iteration)",
        "capacity": args.capacity,
        "iterations_per_round": args.iterations,
        "rounds": args.rounds,
        "ops_per_s": round(ops_per_s, 1),
        "torchrl_ops_per_s": None,
        "ratio_vs_torchrl": None,
        "ours_us_per_op": _per_iteration_us(ours_med, args.iterations),
        "ours_with_dedup_and_meta_ops_per_s": round(
            args.iterations / statistics.median(r["seconds"] for r in meta_rounds), 1
        ),
        "ours_fill_s": round(fill_ours_s, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    if theirs is not None:
        import torch
        import torchrl

        theirs_med = _median_round(theirs_rounds)
        torchrl_ops = args.iterations / theirs_med["seconds"]
        result.update(
            torchrl_ops_per_s=round(torchrl_ops, 1),
            ratio_vs_torchrl=round(ops_per_s / torchrl_ops, 3),
            # CPU seconds (all threads of the process): less sensitive to a busy machine.
            ratio_vs_torchrl_cpu_time=round(
                statistics.median(r["cpu_seconds"] for r in theirs_rounds)
                / statistics.median(r["cpu_seconds"] for r in ours_rounds),
                3,
            ),
            torchrl_us_per_op=_per_iteration_us(theirs_med, args.iterations),
            torchrl_fill_s=round(fill_theirs_s or 0.0, 3),
            torchrl_version=torchrl.__version__,
            torch_threads=torch.get_num_threads(),
        )
    else:
        result["torchrl_error"] = torchrl_error
    bytes_per_item, overhead = _storage_bytes_per_item(ours)
    result.update(
        bytes_per_item=round(bytes_per_item, 1),
        store_overhead_bytes_per_item=round(overhead, 1),
        payload_bytes_per_item=round(sum(map(len, packed)) / len(packed), 1),
        raw_bytes_per_item=round(sum(map(len, raw)) / len(raw), 1),
        compression_ratio=round(compression_ratio, 4),
        compression_ratio_with_dictionary=round(compression_ratio_dict, 4),
        payload="Leyline Trajectory from host-sim (random controller, T=20, 21 graphs) + zstd level 3",
        python=platform.python_version(),
        numpy=np.__version__,
        machine=platform.machine(),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
