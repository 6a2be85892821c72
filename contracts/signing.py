"""Signed policy snapshots: HMAC-SHA256 over the snapshot's identity and weights digest.

The key is shared by the learner (signs) and the actors/serving (verify),
given as ``TAMIYO_POLICY_KEY`` (any string; hex is fine).  Verification
checks the size cap first, then the weights' SHA-256, then the HMAC in
constant time, before anything parses the weights.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from tamiyo.contracts.errors import OversizeError, SignatureError
from tamiyo.contracts.proto import leyline_pb2 as pb

KEY_ENV = "TAMIYO_POLICY_KEY"
# A development key so a local run works out of the box; production sets TAMIYO_POLICY_KEY.
DEV_KEY = b"tamiyo-dev-policy-key-not-secret"
MAX_WEIGHTS_BYTES = 64 << 20


def policy_key(explicit: str | bytes | None = None) -> bytes:
    key = explicit if explicit is not None else os.environ.get(KEY_ENV)
    if key is None:
        return DEV_KEY
    return key.encode() if isinstance(key, str) else key


def key_id(key: bytes) -> str:
    """A public fingerprint of the key, so a mismatch is diagnosable without leaking it."""
    return hashlib.sha256(b"tamiyo-key-id:" + key).hexdigest()[:16]


def _signed_bytes(s: pb.PolicySnapshot) -> bytes:
    config_digest = hashlib.sha256(s.config_json.encode()).hexdigest()
    fields = (s.policy_id, str(s.version), s.sha256.hex(), config_digest, s.algo, str(s.learner_step))
    return "\n".join((*fields, str(s.created_at_ns), s.key_id)).encode()


def sign_snapshot(
    *,
    policy_id: str,
    version: int,
    weights: bytes,
    config_json: str,
    key: bytes,
    algo: str = "",
    learner_step: int = 0,
) -> pb.PolicySnapshot:
    snap = pb.PolicySnapshot(
        policy_id=policy_id,
        version=version,
        weights=weights,
        config_json=config_json,
        sha256=hashlib.sha256(weights).digest(),
        algo=algo,
        learner_step=learner_step,
        created_at_ns=time.time_ns(),
        key_id=key_id(key),
    )
    snap.signature = hmac.new(key, _signed_bytes(snap), hashlib.sha256).digest()
    return snap


def verify_snapshot(snap: pb.PolicySnapshot, key: bytes, max_weights_bytes: int = MAX_WEIGHTS_BYTES) -> None:
    """Raise `SignatureError`/`OversizeError` unless ``snap`` is intact and signed with ``key``."""
    if len(snap.weights) > max_weights_bytes:
        raise OversizeError(f"snapshot weights of {len(snap.weights)} bytes exceed cap {max_weights_bytes}")
    if len(snap.config_json) > 1 << 20:
        raise OversizeError("snapshot config larger than 1 MiB")
    if hashlib.sha256(snap.weights).digest() != snap.sha256:
        raise SignatureError("weights do not match their sha256")
    expected = hmac.new(key, _signed_bytes(snap), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, snap.signature):
        hint = ""
        if snap.key_id != key_id(key):
            hint = f" (signed with key {snap.key_id}, verifying with {key_id(key)})"
        raise SignatureError("bad snapshot signature" + hint)
