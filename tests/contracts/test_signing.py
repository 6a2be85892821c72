"""Policy snapshot signatures: intact snapshots verify; any tampering or wrong key is refused."""

from __future__ import annotations

import pytest

from tamiyo.contracts import codec, errors
from tamiyo.contracts.signing import sign_snapshot, verify_snapshot

KEY = b"k" * 32


def _snap():
    return sign_snapshot(policy_id="p", version=3, weights=b"w" * 100, config_json="{}", key=KEY, algo="ppo")


def test_signed_snapshot_verifies_after_a_trip_through_an_envelope():
    snap = _snap()
    back = codec.decode_envelope(codec.encode_envelope(snap, source="l", producer_id="l", sequence=0)).payload
    verify_snapshot(back, KEY)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: setattr(s, "weights", b"x" + s.weights[1:]),
        lambda s: setattr(s, "version", s.version + 1),
        lambda s: setattr(s, "config_json", '{"evil": 1}'),
        lambda s: setattr(s, "policy_id", "q"),
        lambda s: setattr(s, "signature", bytes(32)),
    ],
)
def test_tampering_is_detected(tamper):
    snap = _snap()
    tamper(snap)
    with pytest.raises(errors.SignatureError):
        verify_snapshot(snap, KEY)


def test_wrong_key_is_refused_with_a_diagnosable_reason():
    with pytest.raises(errors.SignatureError, match="signed with key"):
        verify_snapshot(_snap(), b"other")


def test_oversized_weights_are_refused_before_hashing():
    with pytest.raises(errors.OversizeError):
        verify_snapshot(_snap(), KEY, max_weights_bytes=10)
