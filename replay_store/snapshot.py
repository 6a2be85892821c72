"""Snapshot a PrioritizedReplay to disk and restore it, so a restarted replay service does not start empty.

File format: an uncompressed numpy ``.npz`` (a zip of ``.npy`` arrays), written and
read with ``allow_pickle=False`` so loading a file never runs code.  Arrays:

- ``format`` (str): ``"tamiyo.replay_store.snapshot"``; ``version`` (int64): 1.
- ``config`` (str): JSON with capacity, alpha, eps, max_bytes, max_priority, the staleness cap
  (min_policy_version, retired_total; 0 when absent), rejected_total (0 when absent), head,
  next_item_id, counters and the RNG state (bit generator name + state).
- Items, oldest first, one entry each: ``payload_offsets`` (int64, n+1) into
  ``payload_blob`` (uint8, the payloads back to back), ``item_ids``,
  ``producer_codes`` (index into ``producer_table``, -1: none), ``sequences``,
  ``policy_versions``, ``lengths``, ``insert_times``, ``encodings``, ``raw_sizes``,
  ``leaf_priorities`` (``(|p| + eps)^α`` as stored in the tree), ``rejected`` (bool: evicted at the
  learner's word; all false when absent).
- ``producer_table`` (str array).

Restoring puts every item back in its slot and rebuilds the tree from the leaves;
the tree is a pure function of its leaves, so it is bit-identical and sampling with
the restored RNG state continues exactly as the original would have.

The write is atomic: a temp file in the same directory, fsync, ``os.replace``,
fsync of the directory.  A crash leaves either the old snapshot or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tamiyo.replay_store.prioritized import PrioritizedReplay

FORMAT = "tamiyo.replay_store.snapshot"
VERSION = 1


def save_replay_snapshot(replay: PrioritizedReplay, path: str | Path) -> int:
    """Write ``replay`` to ``path`` atomically; returns the file size in bytes."""
    arrays = _capture(replay)
    return _atomic_savez(Path(path), arrays)


def load_replay_snapshot(path: str | Path, clock: Callable[[], float] = time.time) -> PrioritizedReplay:
    """A new PrioritizedReplay in the state ``path`` was saved in (RNG included)."""
    with np.load(Path(path), allow_pickle=False) as data:
        if str(data["format"]) != FORMAT or int(data["version"]) != VERSION:
            raise ValueError(f"{path}: not a {FORMAT} v{VERSION} file")
        config = json.loads(str(data["config"]))
        replay = PrioritizedReplay(
            config["capacity"],
            alpha=config["alpha"],
            eps=config["eps"],
            max_bytes=config["max_bytes"],
            rng=_rng_from_state(config["rng_state"]),
            clock=clock,
        )
        offsets = data["payload_offsets"]
        blob = data["payload_blob"].tobytes()
        payloads = [blob[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
        storage = replay.storage
        storage.restore_state(
            head=config["head"],
            payloads=payloads,
            item_ids=data["item_ids"],
            producer_codes=data["producer_codes"],
            sequences=data["sequences"],
            policy_versions=data["policy_versions"],
            lengths=data["lengths"],
            insert_times=data["insert_times"],
            encodings=data["encodings"],
            raw_sizes=data["raw_sizes"],
            producer_table=[str(p) for p in data["producer_table"].tolist()],
            next_item_id=config["next_item_id"],
            counters=config["counters"],
        )
        leaves = np.zeros(replay.capacity, dtype=np.float64)
        leaves[storage.slots_in_order()] = data["leaf_priorities"]
        replay.tree.rebuild(leaves)
        if "rejected" in data:  # absent from snapshots written before the learner could reject items
            replay.rejected[storage.slots_in_order()] = data["rejected"]
    replay.max_priority = float(config["max_priority"])
    replay.stale_updates = int(config["stale_updates"])
    # Absent from snapshots written before the staleness cap: nothing retired then.
    replay.min_policy_version = int(config.get("min_policy_version", 0))
    replay.retired_total = int(config.get("retired_total", 0))
    replay.rejected_total = int(config.get("rejected_total", 0))
    return replay


def _capture(replay: PrioritizedReplay) -> dict[str, np.ndarray]:
    """Copy everything under the lock (consistent), so the slow file write can happen outside it."""
    with replay.lock:
        st = replay.storage
        order = st.slots_in_order()
        payloads = st.payloads[order].tolist()
        sizes = st.nbytes[order]
        config = {
            "capacity": replay.capacity,
            "alpha": replay.alpha,
            "eps": replay.eps,
            "max_bytes": st.max_bytes,
            "max_priority": replay.max_priority,
            "stale_updates": replay.stale_updates,
            "min_policy_version": replay.min_policy_version,
            "retired_total": replay.retired_total,
            "rejected_total": replay.rejected_total,
            "head": st.head,
            "next_item_id": st.next_item_id,
            "counters": {
                "evicted_total": st.evicted_total,
                "duplicates_total": st.duplicates_total,
                "oversized_total": st.oversized_total,
            },
            "rng_state": replay.rng.bit_generator.state,
        }
        arrays = {
            "item_ids": st.item_ids[order],
            "producer_codes": st.producer_codes[order],
            "sequences": st.sequences[order],
            "policy_versions": st.policy_versions[order],
            "lengths": st.lengths[order],
            "insert_times": st.insert_times[order],
            "encodings": st.encodings[order],
            "raw_sizes": st.raw_sizes[order],
            "leaf_priorities": replay.tree.get(order),
            "rejected": replay.rejected[order],
            "producer_table": np.array(st.producer_table, dtype=str),
        }
    offsets = np.zeros(order.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    arrays["payload_offsets"] = offsets
    arrays["payload_blob"] = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    arrays["format"] = np.array(FORMAT)
    arrays["version"] = np.array(VERSION, dtype=np.int64)
    arrays["config"] = np.array(json.dumps(config))
    return arrays


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> int:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path.stat().st_size


_BIT_GENERATORS = {"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"}


def _rng_from_state(state: dict) -> np.random.Generator:
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ValueError(f"unknown bit generator {name!r} in snapshot")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
