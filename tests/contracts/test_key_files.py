"""Policy keys on disk: a generated keypair loads back, private keys are 0600 and refused when open to
others, malformed or empty files are refused, and racing processes agree on one dev keypair."""

from __future__ import annotations

import multiprocessing
import stat

import pytest

from tamiyo.contracts.key_files import (
    PRIVATE_NAME,
    PUBLIC_NAME,
    KeyFileError,
    ensure_keypair,
    load_signer,
    load_trusted,
    write_keypair,
)


def test_a_generated_keypair_loads_back_with_safe_permissions(tmp_path):
    private, public, signer = write_keypair(tmp_path / "keys")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert load_signer(private).key_id == signer.key_id
    assert load_trusted([public]).ids == [signer.key_id]
    assert load_trusted([tmp_path / "keys"]).ids == [signer.key_id]  # a directory: its *.pub.pem
    assert not list((tmp_path / "keys").glob(".*"))  # no temporary left behind
    with pytest.raises(KeyFileError, match="already exists"):
        write_keypair(tmp_path / "keys")
    _, _, again = write_keypair(tmp_path / "keys", overwrite=True)
    assert again.key_id != signer.key_id


def test_unsafe_missing_empty_and_malformed_keys_are_refused(tmp_path):
    private, public, _ = write_keypair(tmp_path)
    private.chmod(0o644)
    with pytest.raises(KeyFileError, match=r"readable by others \(mode 0644\); chmod 600"):
        load_signer(private)
    with pytest.raises(KeyFileError, match="cannot read signing key"):
        load_signer(tmp_path / "missing.pem")
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    empty.chmod(0o600)
    with pytest.raises(KeyFileError, match="empty key file"):
        load_signer(empty)
    public.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_signer(public)  # a public key where the private one belongs
    (tmp_path / "garbage.pub.pem").write_bytes(b"not a key")
    with pytest.raises(KeyFileError, match=r"garbage\.pub\.pem"):
        load_trusted([tmp_path / "garbage.pub.pem"])
    (tmp_path / "nothing-here").mkdir()
    with pytest.raises(KeyFileError, match=r"no \*\.pub\.pem public key in directory"):
        load_trusted([tmp_path / "nothing-here"])
    with pytest.raises(KeyFileError, match="no public key given"):
        load_trusted([])


def _ensure(directory: str, queue: multiprocessing.Queue) -> None:
    from pathlib import Path

    queue.put(ensure_keypair(Path(directory)).key_id)


def test_processes_racing_to_make_the_dev_keypair_all_get_the_same_one(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ensure, args=(str(tmp_path / "dev"), queue)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = {queue.get(timeout=60) for _ in procs}
    for p in procs:
        p.join(timeout=30)
    assert len(ids) == 1
    assert load_signer(tmp_path / "dev" / PRIVATE_NAME).key_id == ids.pop()
    (tmp_path / "dev" / PUBLIC_NAME).write_text("damaged")  # derived from the private key: made again
    assert ensure_keypair(tmp_path / "dev").key_id == load_trusted([tmp_path / "dev" / PUBLIC_NAME]).ids[0]
    assert load_trusted([tmp_path / "dev" / PUBLIC_NAME]).ids == [load_signer(tmp_path / "dev" / PRIVATE_NAME).key_id]
