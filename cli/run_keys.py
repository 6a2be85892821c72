"""The policy keys of one `tamiyo train` run, and which service gets which.

Given a signing key (``--signing-key`` or ``TAMIYO_POLICY_SIGNING_KEY``), the run uses it; otherwise it
makes a fresh keypair in ``runs/<id>/keys/`` (so `make demo` needs no setup and no key is shared
between runs; a second try of the same run directory keeps the keypair it finds there).  Only the
learner is given the private key; the actors and the run's own final-policy fetch get public keys
only, so no reader can forge a snapshot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tamiyo.cli.keys import SIGNING_ENV, TRUSTED_ENV, KeyConfigError
from tamiyo.contracts.key_files import (
    PRIVATE_NAME,
    PUBLIC_NAME,
    KeyFileError,
    ensure_keypair,
    load_signer,
    load_trusted,
)
from tamiyo.contracts.signing import TrustedKeys


@dataclass(frozen=True)
class RunKeys:
    signing_key: Path  # the private key: the learner's alone
    trusted: tuple[Path, ...]  # public key files or directories: every reader's
    key_id: str
    generated: bool  # made by this run (runs/<id>/keys/)

    def learner_env(self) -> dict[str, str]:
        return {SIGNING_ENV: str(self.signing_key), TRUSTED_ENV: ",".join(map(str, self.trusted))}

    def reader_env(self) -> dict[str, str]:
        return {TRUSTED_ENV: ",".join(map(str, self.trusted))}

    def trusted_keys(self) -> TrustedKeys:
        return load_trusted(self.trusted)


def run_keys(signing_key: str | None, trusted_keys: str | None, keys_dir: Path) -> RunKeys:
    """The run's keys: the given signing key (and trusted set), else a fresh keypair in ``keys_dir``."""
    keys_dir = keys_dir.resolve()  # the children may not share our working directory
    from_env = os.environ.get(SIGNING_ENV)
    if signing_key is None and from_env is not None and not from_env.strip():
        raise KeyConfigError(f"{SIGNING_ENV} is set but empty")
    given = signing_key or from_env or None
    trusted_spec = trusted_keys or os.environ.get(TRUSTED_ENV) or ""
    extra = tuple(Path(p) for p in trusted_spec.split(",") if p.strip())
    try:
        if given is None:
            signer = ensure_keypair(keys_dir)  # the run's own: made now, or kept from an earlier try of this run
            public = keys_dir / PUBLIC_NAME
            return RunKeys(keys_dir / PRIVATE_NAME, (public, *(p.resolve() for p in extra)), signer.key_id, True)
        path = Path(given).resolve()
        signer = load_signer(path)
        # The readers need its public key as a file: written next to the run (a public key is no secret).
        public = keys_dir / PUBLIC_NAME
        try:
            keys_dir.mkdir(parents=True, exist_ok=True)
            public.write_bytes(signer.public_pem())
        except OSError as err:
            raise KeyFileError(f"cannot write {public}: {err}") from None
        trusted = (public, *(p.resolve() for p in extra))
        load_trusted(trusted)  # malformed ones fail here, not in every child
        return RunKeys(path, trusted, signer.key_id, False)
    except KeyFileError as err:
        raise KeyConfigError(str(err)) from None
