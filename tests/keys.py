"""Policy keys for tests: one throwaway Ed25519 keypair per test session (no key is ever fixed in code)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import PolicySigner
from tamiyo.policy.model import TamiyoGNN
from tamiyo.policy.signing import signed_snapshot

SIGNER = PolicySigner.generate()
TRUSTED = SIGNER.trusted()
OTHER_SIGNER = PolicySigner.generate()  # a key nobody trusts: snapshots a forger could sign


def write_keys(directory: Path) -> tuple[Path, Path]:
    """SIGNER's private (0600) and public key files in ``directory``, for services started as commands."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "policy_signing.pem", directory / "policy_signing.pub.pem"
    private.write_bytes(SIGNER.private_pem())
    private.chmod(0o600)
    public.write_bytes(SIGNER.public_pem())
    return private, public


def hostile_snapshots(model: TamiyoGNN, version: int, policy_id: str) -> dict[str, pb.PolicySnapshot]:
    """Snapshots a reader must refuse although each looks newer: signed by a key nobody trusts; signed
    by the trusted key but with the weights changed afterwards (digest recomputed, so only the signature
    can tell); and one of the retired HMAC scheme, signed with its public development key."""
    untrusted = signed_snapshot(model, version=version, policy_id=policy_id, signer=OTHER_SIGNER)
    tampered = signed_snapshot(model, version=version, policy_id=policy_id, signer=SIGNER)
    weights = bytearray(tampered.weights)
    weights[-1] ^= 0x01
    tampered.weights = bytes(weights)
    tampered.sha256 = hashlib.sha256(tampered.weights).digest()
    hmac_era = signed_snapshot(model, version=version, policy_id=policy_id, signer=SIGNER)
    fields = (policy_id, str(version), hmac_era.sha256.hex(), hashlib.sha256(hmac_era.config_json.encode()).hexdigest())
    old_key = b"tamiyo-dev-policy-key-not-secret"
    hmac_era.key_id = hashlib.sha256(b"tamiyo-key-id:" + old_key).hexdigest()[:16]
    hmac_era.signature = hmac.new(old_key, "\n".join(fields).encode(), hashlib.sha256).digest()
    return {"untrusted key": untrusted, "tampered weights": tampered, "retired HMAC scheme": hmac_era}
