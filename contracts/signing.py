"""Signed policy snapshots: Ed25519 over the snapshot's identity and its weights' SHA-256.

Only the holder of the private key (the learner, `tamiyo promote`) can sign; actors and serving hold
public keys only, so a compromised reader can verify but never forge.  Each snapshot names the key
that signed it (``key_id``, a fingerprint of the public key), and a reader trusts a *set* of public
keys: rotation is adding the new public key to every reader's set before the learner switches.

Verification checks the size caps first, then the weights' SHA-256, then the signature, before
anything parses the weights.  Snapshots of the retired HMAC scheme (32-byte signatures) are refused.
There is no default key anywhere: keys come from files (`contracts.key_files`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tamiyo.contracts.errors import OversizeError, SignatureError
from tamiyo.contracts.proto import leyline_pb2 as pb

MAX_WEIGHTS_BYTES = 64 << 20
MAX_CONFIG_BYTES = 1 << 20
SIGNATURE_BYTES = 64  # Ed25519
# Domain separation: these bytes can never be mistaken for anything else Tamiyo (or anyone) signs.
_DOMAIN = b"tamiyo-policy-snapshot/ed25519/v1\n"


def key_id(public_key: Ed25519PublicKey) -> str:
    """The public key's fingerprint (16 hex digits of its SHA-256): names a key without revealing anything."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(b"tamiyo-key-id:" + raw).hexdigest()[:16]


class TrustedKeys:
    """The public keys a reader accepts snapshots from, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {key_id(k): k for k in keys}
        if not self._keys:
            raise ValueError("a trusted key set needs at least one public key")

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def union(self, other: TrustedKeys) -> TrustedKeys:
        return TrustedKeys([*self._keys.values(), *other._keys.values()])

    def __repr__(self) -> str:
        return f"TrustedKeys({', '.join(self.ids)})"


class PolicySigner:
    """An Ed25519 private key that signs snapshots; ``trusted()`` is the matching public key as a set."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> PolicySigner:
        return cls(Ed25519PrivateKey.generate())

    def trusted(self) -> TrustedKeys:
        return TrustedKeys([self.public_key])

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def __repr__(self) -> str:  # never the key itself
        return f"PolicySigner(key_id={self.key_id})"


def _signed_bytes(s: pb.PolicySnapshot) -> bytes:
    """Every field that changes what a reader does, each length-prefixed (no two snapshots share bytes)."""
    config_digest = hashlib.sha256(s.config_json.encode()).digest()
    fields = (s.policy_id.encode(), str(s.version).encode(), s.sha256, config_digest, s.algo.encode(),
              str(s.learner_step).encode(), str(s.created_at_ns).encode(), s.key_id.encode())  # fmt: skip
    return _DOMAIN + b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def sign_snapshot(
    *,
    policy_id: str,
    version: int,
    weights: bytes,
    config_json: str,
    signer: PolicySigner,
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
        key_id=signer.key_id,
    )
    snap.signature = signer.sign(_signed_bytes(snap))
    return snap


def verify_snapshot(snap: pb.PolicySnapshot, trusted: TrustedKeys, max_weights_bytes: int = MAX_WEIGHTS_BYTES) -> None:
    """Raise `SignatureError`/`OversizeError` unless ``snap`` is intact and signed by a key in ``trusted``."""
    if len(snap.weights) > max_weights_bytes:
        raise OversizeError(f"snapshot weights of {len(snap.weights)} bytes exceed cap {max_weights_bytes}")
    if len(snap.config_json.encode()) > MAX_CONFIG_BYTES:  # bytes, not characters (the envelope capped both)
        raise OversizeError("snapshot config larger than 1 MiB")
    if len(snap.signature) != SIGNATURE_BYTES:
        scheme = " (the retired HMAC scheme?)" if len(snap.signature) == 32 else ""
        raise SignatureError(f"signature of {len(snap.signature)} bytes is not Ed25519{scheme}")
    public = trusted.get(snap.key_id)
    if public is None:
        raise SignatureError(f"signed by key {snap.key_id[:32]!r}, which is not trusted (trusted: {trusted.ids})")
    if hashlib.sha256(snap.weights).digest() != snap.sha256:
        raise SignatureError("weights do not match their sha256")
    try:
        public.verify(snap.signature, _signed_bytes(snap))
    except InvalidSignature:
        raise SignatureError(f"bad snapshot signature for key {snap.key_id}") from None


def trusted_from_pems(pems: Mapping[str, bytes]) -> TrustedKeys:
    """Public keys from PEM texts (name -> bytes; the name only labels errors).  A text may hold several keys."""
    keys: list[Ed25519PublicKey] = []
    for name, text in pems.items():
        blocks = [b for b in text.split(b"-----END PUBLIC KEY-----") if b.strip()]
        if not blocks:
            raise ValueError(f"{name}: no public key in it")
        for block in blocks:
            try:
                key = serialization.load_pem_public_key(block + b"-----END PUBLIC KEY-----\n")
            except ValueError as err:
                raise ValueError(f"{name}: not a PEM public key ({err})") from None
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"{name}: a {type(key).__name__}, not an Ed25519 public key")
            keys.append(key)
    return TrustedKeys(keys)


def signer_from_pem(name: str, text: bytes) -> PolicySigner:
    """The signer in a PKCS#8 PEM text (unencrypted); ``name`` only labels errors."""
    if not text.strip():
        raise ValueError(f"{name}: empty key file")
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{name}: a {type(key).__name__}, not an Ed25519 private key")
    return PolicySigner(key)
