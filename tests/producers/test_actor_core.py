"""ActorCore without a broker: envs + behaviour policy -> Trajectory envelopes with the dedup identity the
replay relies on, episode accounting, telemetry, and a learned policy that waits for a verified snapshot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tamiyo.contracts.codec import decode_envelope, encode_envelope
from tamiyo.contracts.packing import unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.signing import signed_snapshot
from tamiyo.producers.actor_config import ActorConfig
from tamiyo.producers.actor_core import ActorCore
from tests.keys import OTHER_SIGNER, SIGNER, TRUSTED


def _config(**kw) -> ActorConfig:
    return ActorConfig(**{"env": "host-sim", "num_envs": 3, "unroll_length": 5, "actor_id": "a7", "run_id": "r"} | kw)


def test_baseline_actor_encodes_unrolls_with_one_producer_id_and_increasing_sequences():
    core = ActorCore(_config(controller="random"), trusted=None)
    assert core.policy_ready and core.acceptor is None
    envelopes = []
    for _ in range(2):
        for unroll in core.collect():
            envelopes.append(decode_envelope(core.encode(unroll), expect=pb.Trajectory))
    assert core.stats.unrolls_made == 6
    assert len({d.envelope.producer_id for d in envelopes}) == 1
    assert envelopes[0].envelope.producer_id.startswith("a7:")
    assert [d.envelope.sequence for d in envelopes] == list(range(6))
    assert [d.payload.sequence for d in envelopes] == list(range(6))
    for d in envelopes:
        unroll = unroll_from_proto(d.payload)
        unroll.validate(core.schema)
        assert d.payload.actor_id == "a7" and d.payload.schema_name == core.schema.name
        assert d.envelope.correlation_id == "r"


def test_episodes_and_frames_are_counted_once():
    core = ActorCore(_config(controller="none", unroll_length=31), trusted=None)
    core.collect()  # host episodes are 30 epochs: every env finished one
    assert core.record_episodes() == 3 * 31 and core.stats.episodes == 3
    assert core.record_episodes() == 0 and len(core.stats.recent_returns) == 3
    # Bounded (issue 12 item 6): the collector forgets what the actor has taken, the counts go on.
    for _ in range(3):
        core.collect()
        core.record_episodes()
    assert core.stats.episodes == 3 + 3 * 3 and core.collector.episodes == []
    assert core.stats.env_steps == 4 * 3 * 31 and len(core.stats.recent_returns) == 12


def test_telemetry_says_what_the_actor_did():
    core = ActorCore(_config(controller="heuristic"), trusted=None)
    core.collect()
    core.record_episodes()
    core.published(0, 12.5)
    packet = decode_envelope(core.telemetry_value(queue_depth=4), expect=pb.TelemetryPacket).payload
    metrics = {m.name: m.value for m in packet.metrics}
    assert packet.source == "actor/a7" and packet.health == pb.HEALTH_OK
    assert metrics["env_steps"] == 15 and metrics["queue_depth"] == 4 and metrics["unrolls_published"] == 1
    assert metrics["publish_latency_ms_p50"] == 12.5 and metrics["policy_version"] == 0
    assert "snapshots_loaded" not in metrics  # a baseline follows no policy topic


def test_learned_actor_needs_a_key_and_acts_only_after_a_verified_snapshot():
    with pytest.raises(ValueError, match="key"):
        ActorCore(_config(), trusted=None)
    core = ActorCore(_config(), trusted=TRUSTED)
    assert not core.policy_ready
    torch.manual_seed(0)
    model = TamiyoGNN(core.schema, ModelConfig(hidden=16, layers=("sage",)))
    forged = signed_snapshot(model, version=1, policy_id="tamiyo", signer=OTHER_SIGNER)
    assert not core.acceptor.accept(encode_envelope(forged, source="x", producer_id="x", sequence=0))
    assert not core.policy_ready
    good = signed_snapshot(model, version=1, policy_id="tamiyo", signer=SIGNER)
    assert core.acceptor.accept(encode_envelope(good, source="x", producer_id="x", sequence=1))
    assert core.policy_ready
    unrolls = core.collect()
    assert all(np.all(u.policy_versions == 1) for u in unrolls)
    metrics = core.telemetry_metrics(queue_depth=0)
    assert metrics["snapshots_loaded"] == 1 and metrics["snapshots_rejected"] == 1 and metrics["policy_version"] == 1


def test_unknown_overflow_policy_is_refused():
    with pytest.raises(ValueError, match="overflow"):
        ActorCore(_config(controller="none", overflow="spill"), trusted=None)
