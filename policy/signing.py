"""Turn a network into a signed `PolicySnapshot` message (safetensors weights + JSON config)."""

from __future__ import annotations

from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import PolicySigner, sign_snapshot
from tamiyo.policy.model import TamiyoGNN
from tamiyo.policy.snapshot import encode_snapshot


def signed_snapshot(
    model: TamiyoGNN, *, version: int, policy_id: str, signer: PolicySigner, algo: str = "", learner_step: int = 0
) -> pb.PolicySnapshot:
    snap = encode_snapshot(model, version)
    return sign_snapshot(
        policy_id=policy_id,
        version=version,
        weights=snap.weights,
        config_json=snap.config_json,
        signer=signer,
        algo=algo,
        learner_step=learner_step,
    )
