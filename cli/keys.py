"""Where a service's policy keys come from: flags, then environment variables, then nothing.

A service that signs (learner, `tamiyo promote`) needs ``--signing-key`` / ``TAMIYO_POLICY_SIGNING_KEY``;
one that verifies (actor, serve) needs ``--trusted-keys`` / ``TAMIYO_POLICY_TRUSTED_KEYS`` (files or
directories, comma-separated).  Without them it stops with one line that says how to make a key.
``--insecure-dev-keys`` is the only other way: a throwaway keypair kept in
``$TAMIYO_DEV_KEYS_DIR`` (default ``~/.cache/tamiyo/insecure-dev-keys``), shared by the services of one
machine that are given the same flag, announced loudly on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tamiyo.cli.user_errors import UserError
from tamiyo.contracts.key_files import KeyFileError, ensure_keypair, load_signer, load_trusted
from tamiyo.contracts.signing import PolicySigner, TrustedKeys

SIGNING_ENV = "TAMIYO_POLICY_SIGNING_KEY"
TRUSTED_ENV = "TAMIYO_POLICY_TRUSTED_KEYS"
DEV_DIR_ENV = "TAMIYO_DEV_KEYS_DIR"
T = TypeVar("T")
HOW_TO_MAKE = "make a keypair with `tamiyo keys generate --out DIR`"


class KeyConfigError(UserError):
    """No usable key: `tamiyo` prints the message as one line and exits with status 2."""


def add_signing_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("policy keys")
    g.add_argument("--signing-key", type=Path, help=f"Ed25519 private key that signs snapshots (env {SIGNING_ENV})")
    g.add_argument(
        "--trusted-keys",
        help=f"public keys of earlier signers to trust when resuming, comma-separated files/dirs (env {TRUSTED_ENV})",
    )
    _add_dev_flag(g)


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("policy keys")
    g.add_argument(
        "--trusted-keys", help=f"public keys to accept snapshots from, comma-separated files/dirs (env {TRUSTED_ENV})"
    )
    _add_dev_flag(g)


def _add_dev_flag(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--insecure-dev-keys",
        action="store_true",
        help=f"use a throwaway keypair from ${DEV_DIR_ENV} (development only: anyone who can read it can publish)",
    )


def signer_from_args(args: argparse.Namespace) -> PolicySigner:
    path = args.signing_key or _env_path(SIGNING_ENV)
    if path is not None:
        return _load(lambda: load_signer(path))
    if args.insecure_dev_keys:
        return dev_signer()
    raise KeyConfigError(f"no policy signing key: pass --signing-key FILE or set {SIGNING_ENV} ({HOW_TO_MAKE})")


def trusted_from_args(args: argparse.Namespace, signer: PolicySigner | None = None) -> TrustedKeys:
    """The trusted set a reader verifies with; a signer always trusts its own public key as well."""
    spec = args.trusted_keys or os.environ.get(TRUSTED_ENV) or ""
    paths = [Path(p) for p in spec.split(",") if p.strip()]
    if paths:
        trusted = _load(lambda: load_trusted(paths))
        return trusted.union(signer.trusted()) if signer is not None else trusted
    if signer is not None:
        return signer.trusted()
    if args.insecure_dev_keys:
        return dev_signer().trusted()
    raise KeyConfigError(
        f"no trusted policy keys: pass --trusted-keys FILE or set {TRUSTED_ENV} to the learner's public key"
        f" ({HOW_TO_MAKE})"
    )


def dev_signer() -> PolicySigner:
    directory = Path(os.environ.get(DEV_DIR_ENV) or Path.home() / ".cache" / "tamiyo" / "insecure-dev-keys")
    signer = _load(lambda: ensure_keypair(directory))
    print(
        f"WARNING: INSECURE DEVELOPMENT KEYS ({directory}, key {signer.key_id}): whoever can read that directory"
        " can publish policies. Never use --insecure-dev-keys outside a development machine.",
        file=sys.stderr,
        flush=True,
    )
    return signer


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.strip():
        raise KeyConfigError(f"{name} is set but empty ({HOW_TO_MAKE})")
    return Path(value)


def _load(read: Callable[[], T]) -> T:
    try:
        return read()
    except KeyFileError as err:
        raise KeyConfigError(str(err)) from None
