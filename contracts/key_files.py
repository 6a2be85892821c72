"""Policy keys on disk: generate a keypair, load a signer or a trusted set, refuse what is unsafe.

A keypair directory holds ``policy_signing.pem`` (the private key, PKCS#8, mode 0600: only the
learner and `tamiyo promote` read it) and ``policy_signing.pub.pem`` (the public key, for actors and
serving).  A private key file that others can read is refused, as ssh does.  A trusted set is built
from files and directories (every ``*.pub.pem`` inside); an empty or malformed key is an error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from tamiyo.contracts.atomic_files import write_atomically
from tamiyo.contracts.signing import PolicySigner, TrustedKeys, signer_from_pem, trusted_from_pems

PRIVATE_NAME = "policy_signing.pem"
PUBLIC_NAME = "policy_signing.pub.pem"


class KeyFileError(ValueError):
    """A key file is missing, unreadable, malformed or too open; the message says which and why."""


def write_keypair(directory: Path, *, overwrite: bool = False) -> tuple[Path, Path, PolicySigner]:
    """A fresh keypair in ``directory`` (created 0700 if missing); refuses to replace one unless asked."""
    private, public = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if private.exists() and not overwrite:
        raise KeyFileError(f"{private} already exists (pass --force to replace it)")
    signer = PolicySigner.generate()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(private, signer.private_pem(), 0o600, replace=True)
        write_atomically(public, signer.public_pem(), 0o644, replace=True)
    except OSError as err:
        raise KeyFileError(f"cannot write the keypair in {directory}: {err}") from None
    return private, public, signer


def ensure_keypair(directory: Path) -> PolicySigner:
    """The keypair in ``directory``, made on first use.  Safe when several processes race to make it:
    the private key is linked into place only if absent, and every process then loads the winner."""
    private, public = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not private.exists():
            write_atomically(private, PolicySigner.generate().private_pem(), 0o600, replace=False)
        signer = load_signer(private)
        if _public_key_id(public) != signer.key_id:  # missing, damaged or another key's: it is derived, remake it
            write_atomically(public, signer.public_pem(), 0o644, replace=True)
    except OSError as err:
        raise KeyFileError(f"cannot make the keypair in {directory}: {err}") from None
    return signer


def _public_key_id(path: Path) -> str | None:
    try:
        ids = trusted_from_pems({str(path): path.read_bytes()}).ids
    except (OSError, ValueError):
        return None
    return ids[0] if len(ids) == 1 else None


def load_signer(path: Path) -> PolicySigner:
    try:
        mode = path.stat().st_mode
        text = path.read_bytes()
    except OSError as err:
        raise KeyFileError(f"cannot read signing key {path}: {err.strerror}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"signing key {path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    try:
        return signer_from_pem(str(path), text)
    except ValueError as err:
        raise KeyFileError(str(err)) from None


def load_trusted(paths: Iterable[Path]) -> TrustedKeys:
    """Public keys from files and directories (a directory: every ``*.pub.pem`` in it)."""
    pems: dict[str, bytes] = {}
    for path in paths:
        files = sorted(path.glob("*.pub.pem")) if path.is_dir() else [path]
        if not files:
            raise KeyFileError(f"no *.pub.pem public key in directory {path}")
        for f in files:
            try:
                pems[str(f)] = f.read_bytes()
            except OSError as err:
                raise KeyFileError(f"cannot read public key {f}: {err.strerror}") from None
    if not pems:
        raise KeyFileError("no public key given")
    try:
        return trusted_from_pems(pems)
    except ValueError as err:
        raise KeyFileError(str(err)) from None
