"""write_atomically: the one helper behind key files, broker secrets and pids.json."""

from __future__ import annotations

import os
import stat

import pytest

from tamiyo.contracts.atomic_files import write_atomically


def test_replaces_whole_with_the_mode_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    write_atomically(path, b"new", 0o644)
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o644
    write_atomically(path, b"secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private unless told otherwise
    assert os.listdir(tmp_path) == ["f"]


def test_without_replace_the_first_writer_wins(tmp_path):
    path = tmp_path / "key"
    write_atomically(path, b"first", replace=False)
    write_atomically(path, b"second", replace=False)
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["key"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"old")

    def refuse(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]
