"""SnapshotAcceptor.accept without a broker (what actors and serving run on every policy record):
verify, then load a snapshot into the running policy.

A newer snapshot of the same network is copied into the current model in place (no rebuild); a snapshot of
another network is built fresh; anything that fails a check leaves the acting policy untouched.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from tamiyo.contracts.codec import encode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.signing import PolicySigner, sign_snapshot
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.signing import signed_snapshot
from tamiyo.policy.snapshot import encode_snapshot, network_from_snapshot
from tamiyo.policy.swappable import SwappablePolicy
from tamiyo.policy.verification import SnapshotAcceptor, SnapshotVerifier
from tamiyo.producers.envs import make_env
from tests.keys import OTHER_SIGNER, SIGNER, TRUSTED

POLICY_ID = "tamiyo-test"


@pytest.fixture(scope="module")
def env():
    return make_env("host-sim", seed=3)


def _model(seed: int, schema, hidden: int = 16) -> TamiyoGNN:
    torch.manual_seed(seed)
    return TamiyoGNN(schema, ModelConfig(hidden=hidden, layers=("sage",)))


def _record(model: TamiyoGNN, version: int, signer: PolicySigner = SIGNER) -> bytes:
    snap = signed_snapshot(model, version=version, policy_id=POLICY_ID, signer=signer)
    return encode_envelope(snap, source="test", producer_id="test", sequence=version)


def _subscriber(schema) -> SnapshotAcceptor:
    policy = SwappablePolicy(deterministic=True)
    return SnapshotAcceptor(policy, SnapshotVerifier(TRUSTED, POLICY_ID, schema))


def _logits(policy_or_model, graphs: PackedGraphs) -> list[torch.Tensor]:
    from tamiyo.policy.batching import collate

    model = policy_or_model.model if isinstance(policy_or_model, SwappablePolicy) else policy_or_model
    with torch.no_grad():
        return [t.clone() for t in model(collate(graphs, "cpu")).logits]


def _graphs(env, n: int = 3) -> tuple[PackedGraphs, np.ndarray]:
    obs = [env.reset(seed=s) for s in range(n)]
    return PackedGraphs.concat([o.graph for o in obs]), np.stack([o.action_mask for o in obs])


def test_newer_snapshot_of_the_same_network_is_copied_in_place_bit_for_bit(env):
    sub = _subscriber(env.schema)
    graphs, masks = _graphs(env)
    assert sub.accept(_record(_model(1, env.schema), 1))
    first = sub.policy.model
    newer = _model(2, env.schema)
    assert sub.accept(_record(newer, 2))
    assert sub.policy.model is first, "same network config: weights copied in place, no rebuild"
    assert sub.policy.version == 2 and sub.stats.loaded == 2
    for got, want in zip(_logits(sub.policy, graphs), _logits(newer, graphs), strict=True):
        assert torch.equal(got, want)
    # The acting path sees the new weights, and stamps the new version.
    assert sub.policy(graphs, masks).version == 2


def test_weights_copied_after_a_rebuild_go_into_the_new_network(env):
    """The in-place copy writes into tensors cached per network: after a snapshot of another network
    replaced it, the next same-shape snapshot must land in the new network, not the old one."""
    sub = _subscriber(env.schema)
    graphs, _ = _graphs(env)
    assert sub.accept(_record(_model(1, env.schema, hidden=16), 1))
    assert sub.accept(_record(_model(2, env.schema, hidden=16), 2))  # in place: the cache is filled
    assert sub.accept(_record(_model(3, env.schema, hidden=24), 3))  # rebuilt
    newest = _model(4, env.schema, hidden=24)
    assert sub.accept(_record(newest, 4))
    for got, want in zip(_logits(sub.policy, graphs), _logits(newest, graphs), strict=True):
        assert torch.equal(got, want)


def test_weights_land_in_a_network_converted_in_place_after_the_cache_was_filled(env):
    """Converting the running network in place (here to float64) gives its parameters new storage: the
    cached tensors must follow, or snapshots would be copied into orphans (found in review)."""
    policy = SwappablePolicy(_model(1, env.schema), version=1)
    policy.load_weights({k: v.clone() for k, v in _model(2, env.schema).state_dict().items()}, 2)  # cache filled
    assert policy.model is not None
    policy.model.double()
    newest = _model(3, env.schema).state_dict()
    policy.load_weights(newest, 3)
    for name, tensor in policy.model.state_dict().items():
        assert tensor.dtype == torch.float64 and torch.equal(tensor, newest[name].double()), name


def test_older_or_equal_versions_are_ignored(env):
    sub = _subscriber(env.schema)
    graphs, _ = _graphs(env)
    newest = _model(5, env.schema)
    assert sub.accept(_record(newest, 5))
    assert not sub.accept(_record(_model(6, env.schema), 5))
    assert not sub.accept(_record(_model(7, env.schema), 4))
    assert sub.policy.version == 5 and not sub.stats.rejected
    for got, want in zip(_logits(sub.policy, graphs), _logits(newest, graphs), strict=True):
        assert torch.equal(got, want)


def test_a_snapshot_of_another_network_is_built_fresh(env):
    sub = _subscriber(env.schema)
    graphs, _ = _graphs(env)
    assert sub.accept(_record(_model(1, env.schema, hidden=16), 1))
    first = sub.policy.model
    wider = _model(2, env.schema, hidden=24)
    assert sub.accept(_record(wider, 2))
    assert sub.policy.model is not first and sub.policy.model.config.hidden == 24
    for got, want in zip(_logits(sub.policy, graphs), _logits(wider, graphs), strict=True):
        assert torch.equal(got, want)


def test_wrong_key_is_rejected_and_the_policy_is_untouched(env):
    sub = _subscriber(env.schema)
    graphs, _ = _graphs(env)
    kept = _model(1, env.schema)
    assert sub.accept(_record(kept, 1))
    assert not sub.accept(_record(_model(2, env.schema), 2, signer=OTHER_SIGNER))
    assert sub.stats.rejected and sub.policy.version == 1
    for got, want in zip(_logits(sub.policy, graphs), _logits(kept, graphs), strict=True):
        assert torch.equal(got, want)


def test_signed_weights_that_do_not_fit_the_declared_network_change_nothing(env):
    """A validly signed snapshot whose config matches but whose tensors do not (a missing tensor, a wrong
    shape) is refused before any weight is copied: no half-updated network."""
    sub = _subscriber(env.schema)
    graphs, _ = _graphs(env)
    kept = _model(1, env.schema)
    assert sub.accept(_record(kept, 1))
    good = encode_snapshot(_model(2, env.schema), version=2)
    state = {k: v.detach().clone() for k, v in _model(2, env.schema).state_dict().items()}
    name = sorted(state)[-1]
    broken = [
        {k: v for k, v in state.items() if k != name},  # a tensor missing
        state | {name: torch.zeros(*state[name].shape[:-1], state[name].shape[-1] + 1)},  # a wrong shape
    ]
    for version, tensors in enumerate(broken, start=2):
        snap = sign_snapshot(
            policy_id=POLICY_ID, version=version, weights=st_save(tensors), config_json=good.config_json, signer=SIGNER
        )
        assert not sub.accept(encode_envelope(snap, source="t", producer_id="t", sequence=version))
    assert sub.policy.version == 1 and sum(sub.stats.rejected.values()) == 2
    for got, want in zip(_logits(sub.policy, graphs), _logits(kept, graphs), strict=True):
        assert torch.equal(got, want)
    # A well-formed snapshot still loads afterwards.
    model, _ = network_from_snapshot(good.weights, good.config_json)
    assert sub.accept(_record(model, 3)) and sub.policy.version == 3


def test_verifier_skips_other_policies_and_older_versions_and_checks_the_schema(env):
    model = _model(1, env.schema)
    verifier = SnapshotVerifier(TRUSTED, POLICY_ID, env.schema)
    verified = verifier.verify(_record(model, 4))
    assert verified is not None and verified.version == 4 and verified.schema == env.schema
    assert verifier.verify(_record(model, 4), newer_than=4) is None
    other = signed_snapshot(model, version=9, policy_id="someone-else", signer=SIGNER)
    assert verifier.verify(encode_envelope(other, source="t", producer_id="t", sequence=0)) is None
    gym = make_env("gym:CartPole-v1").schema
    with pytest.raises(LeylineError, match="another graph schema"):
        SnapshotVerifier(TRUSTED, POLICY_ID, gym).verify(_record(model, 5))
    # A reader without an env of its own (schema None) takes any schema, still verified.
    assert SnapshotVerifier(TRUSTED, POLICY_ID, None).verify(_record(model, 5)) is not None
    with pytest.raises(LeylineError):
        SnapshotVerifier(OTHER_SIGNER.trusted(), POLICY_ID, None).verify(_record(model, 5))
