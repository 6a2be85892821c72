"""Policy snapshot signatures (Ed25519): intact snapshots verify; tampering, untrusted keys, the retired
HMAC scheme and oversized fields are refused, each with a reason that says which."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tamiyo.contracts import codec, errors
from tamiyo.contracts.signing import (
    PolicySigner,
    TrustedKeys,
    key_id,
    sign_snapshot,
    signer_from_pem,
    trusted_from_pems,
    verify_snapshot,
)

SIGNER = PolicySigner.generate()
TRUSTED = SIGNER.trusted()


def _snap(signer: PolicySigner = SIGNER):
    return sign_snapshot(policy_id="p", version=3, weights=b"w" * 100, config_json="{}", signer=signer, algo="ppo")


def test_signed_snapshot_verifies_after_a_trip_through_an_envelope():
    snap = _snap()
    back = codec.decode_envelope(codec.encode_envelope(snap, source="l", producer_id="l", sequence=0)).payload
    verify_snapshot(back, TRUSTED)
    assert back.key_id == SIGNER.key_id and len(back.signature) == 64


def test_a_signature_from_the_rfc_8032_test_vector_key_verifies_with_the_library():
    """The primitive is the standard one: RFC 8032 §7.1 TEST 1 (empty message) signs to the published bytes."""
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    signature = Ed25519PrivateKey.from_private_bytes(secret).sign(b"")
    assert signature.hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: setattr(s, "weights", b"x" + s.weights[1:]),
        lambda s: (
            setattr(s, "sha256", hashlib.sha256(b"x" + s.weights[1:]).digest())
            or setattr(s, "weights", b"x" + s.weights[1:])
        ),  # weights and digest changed together
        lambda s: setattr(s, "version", s.version + 1),
        lambda s: setattr(s, "config_json", '{"evil": 1}'),
        lambda s: setattr(s, "policy_id", "q"),
        lambda s: setattr(s, "learner_step", 99),
        lambda s: setattr(s, "created_at_ns", s.created_at_ns + 1),
        lambda s: setattr(s, "signature", bytes(64)),
    ],
)
def test_tampering_is_detected(tamper):
    snap = _snap()
    tamper(snap)
    with pytest.raises(errors.SignatureError):
        verify_snapshot(snap, TRUSTED)


def test_a_key_that_is_not_trusted_is_refused_with_a_diagnosable_reason():
    other = PolicySigner.generate()
    with pytest.raises(errors.SignatureError, match=f"signed by key '{other.key_id}', which is not trusted"):
        verify_snapshot(_snap(other), TRUSTED)
    forged = _snap(other)
    forged.key_id = SIGNER.key_id  # claims the trusted key's id: the signature still does not verify
    forged.signature = other.sign(b"anything")
    with pytest.raises(errors.SignatureError, match="bad snapshot signature"):
        verify_snapshot(forged, TRUSTED)


def test_a_snapshot_of_the_retired_hmac_scheme_is_refused():
    snap = _snap()
    snap.signature = hmac.new(b"tamiyo-dev-policy-key-not-secret", b"fields", hashlib.sha256).digest()
    with pytest.raises(errors.SignatureError, match=r"not Ed25519 \(the retired HMAC scheme"):
        verify_snapshot(snap, TRUSTED)


def test_rotation_trusts_old_and_new_keys_until_the_old_one_is_dropped():
    new = PolicySigner.generate()
    both = TRUSTED.union(new.trusted())
    verify_snapshot(_snap(SIGNER), both)
    verify_snapshot(_snap(new), both)
    with pytest.raises(errors.SignatureError):
        verify_snapshot(_snap(SIGNER), new.trusted())
    assert both.ids == sorted([SIGNER.key_id, new.key_id])


def test_oversized_weights_and_config_are_refused_before_hashing():
    with pytest.raises(errors.OversizeError):
        verify_snapshot(_snap(), TRUSTED, max_weights_bytes=10)
    big = _snap()
    big.config_json = "x" * ((1 << 20) + 1)
    with pytest.raises(errors.OversizeError):
        verify_snapshot(big, TRUSTED)


def test_keys_round_trip_through_pem_and_bad_pem_is_refused():
    again = signer_from_pem("k", SIGNER.private_pem())
    assert again.key_id == SIGNER.key_id == key_id(SIGNER.public_key)
    two = trusted_from_pems({"both": SIGNER.public_pem() + PolicySigner.generate().public_pem()})
    assert SIGNER.key_id in two.ids and len(two.ids) == 2
    for bad in (b"", b"   \n", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"):
        with pytest.raises(ValueError):
            signer_from_pem("bad", bad)
    with pytest.raises(ValueError, match="not a PEM public key"):
        trusted_from_pems({"bad": b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"})
    with pytest.raises(ValueError, match="no public key"):
        trusted_from_pems({"empty": b""})
    with pytest.raises(ValueError):
        TrustedKeys([])
    assert "PRIVATE" not in repr(SIGNER) and SIGNER.key_id in repr(SIGNER)
