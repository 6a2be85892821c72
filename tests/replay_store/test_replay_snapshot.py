"""Snapshot/restore: identical sampling afterwards, no pickle, atomic replacement."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tamiyo.replay_store import snapshot
from tamiyo.replay_store.prioritized import PrioritizedReplay
from tamiyo.replay_store.snapshot import load_replay_snapshot, save_replay_snapshot
from tamiyo.replay_store.storage import ItemMeta


def _busy_replay(seed: int = 0) -> PrioritizedReplay:
    rng = np.random.default_rng(seed)
    replay = PrioritizedReplay(300, alpha=0.7, eps=1e-4, max_bytes=20_000, seed=seed)
    for step in range(40):
        n = int(rng.integers(1, 20))
        payloads = [rng.bytes(int(rng.integers(10, 200))) for _ in range(n)]
        meta = ItemMeta(
            producer_ids=[f"actor-{i % 3}" for i in range(n)],
            sequences=[step * 100 + i for i in range(n)],
            policy_versions=np.full(n, step),
            lengths=np.full(n, 20),
            encodings=np.full(n, 2),
            raw_sizes=np.arange(n) * 100,
        )
        replay.add(payloads, rng.exponential(1.0, n), meta=meta)
        sample = replay.sample(16)
        replay.update_priorities(sample.indices, rng.exponential(1.0, 16), sample.keys)
    return replay


def _same_samples(a: PrioritizedReplay, b: PrioritizedReplay, rounds: int = 5) -> None:
    for _ in range(rounds):
        sa, sb = a.sample(32, beta=0.5), b.sample(32, beta=0.5)
        assert np.array_equal(sa.indices, sb.indices) and np.array_equal(sa.keys, sb.keys)
        assert sa.payloads == sb.payloads
        assert np.array_equal(sa.weights, sb.weights)
        assert np.array_equal(sa.policy_versions, sb.policy_versions)
        assert np.array_equal(sa.raw_sizes, sb.raw_sizes) and np.array_equal(sa.encodings, sb.encodings)


def test_restore_gives_identical_state_and_sampling(tmp_path: Path) -> None:
    original = _busy_replay()
    path = tmp_path / "replay.snapshot.npz"
    size = save_replay_snapshot(original, path)
    assert size == path.stat().st_size > 0
    restored = load_replay_snapshot(path)
    assert len(restored) == len(original)
    assert np.array_equal(restored.tree.nodes(), original.tree.nodes())
    assert restored.stats() == original.stats()
    # The RNG state travels too: sampling continues exactly as the original would.
    _same_samples(original, restored)
    # And with the same fresh seed on both, the samples agree as well.
    original.rng, restored.rng = np.random.default_rng(99), np.random.default_rng(99)
    _same_samples(original, restored)
    # Dedup and eviction state survive: a stored key is still a duplicate, new inserts evict alike.
    st = original.storage
    oldest = st.slots_in_order()[0]
    key = (st.producer_table[st.producer_codes[oldest]], int(st.sequences[oldest]))
    assert restored.add([b"dup"], keys=[key])[0] == -1
    for replay in (original, restored):
        replay.add([b"n" * 150] * 5, np.ones(5), keys=[("new", i) for i in range(5)])
    _same_samples(original, restored)


def test_snapshot_is_plain_numpy_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "replay.npz"
    save_replay_snapshot(_busy_replay(), path)
    with np.load(path, allow_pickle=False) as data:
        assert str(data["format"]) == snapshot.FORMAT
        assert all(data[name].dtype != object for name in data.files)


def test_empty_replay_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "empty.npz"
    save_replay_snapshot(PrioritizedReplay(10, seed=1), path)
    restored = load_replay_snapshot(path)
    assert len(restored) == 0
    restored.add([b"a"])
    assert restored.sample(2).payloads == [b"a", b"a"]


def test_failed_write_keeps_the_previous_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "replay.npz"
    first = _busy_replay(seed=1)
    save_replay_snapshot(first, path)
    before = path.read_bytes()

    def crash(*_args: object) -> None:
        raise OSError("disk gone at rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_replay_snapshot(_busy_replay(seed=2), path)
    assert path.read_bytes() == before  # the old snapshot is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay.npz"]  # no temp file left behind
    monkeypatch.undo()
    assert len(load_replay_snapshot(path)) == len(first)


def test_write_goes_through_a_temp_file_and_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        renames.append((str(src), str(dst)))
        assert Path(src).parent == Path(dst).parent  # same directory: rename is atomic
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    path = tmp_path / "replay.npz"
    save_replay_snapshot(_busy_replay(), path)
    assert len(renames) == 1 and renames[0][1] == str(path) and renames[0][0] != str(path)


def test_foreign_files_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, format=np.array("something else"), version=np.array(1))
    with pytest.raises(ValueError):
        load_replay_snapshot(path)
