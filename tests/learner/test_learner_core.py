"""LearnerCore without a broker: what one batch record turns into (acks, snapshots, telemetry, dead letters),
the cadences, the refused step, and an exact resume from a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope, encode_payload_bytes
from tamiyo.contracts.errors import LeylineError, MalformedRecordError
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import verify_snapshot
from tamiyo.contracts.topics import Topics
from tamiyo.contracts.unroll import Unroll
from tamiyo.learner.core import LearnerConfig, LearnerCore
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.policy.verification import SnapshotVerifier, VerifiedSnapshot
from tamiyo.producers.envs import make_env
from tamiyo.producers.rollout import RolloutCollector
from tests.keys import SIGNER, TRUSTED

ENV = "gym:CartPole-v1"
TOPICS = Topics.for_run("core")


def _unrolls(count: int, seed: int = 3, env: str = ENV) -> list[list[Unroll]]:
    envs = [make_env(env) for _ in range(4)]
    torch.manual_seed(1)
    policy = ModelPolicy(TamiyoGNN(envs[0].schema, ModelConfig(hidden=16)))
    collector = RolloutCollector(envs, policy, 10, seed=seed, actor_id="a", env_id=env)
    return [collector.collect() for _ in range(count)]


def _items(unrolls: list[Unroll], reward_scale: float = 1.0, key: int | None = 7) -> list[pb.SampledItem]:
    items = []
    for i, u in enumerate(unrolls):
        u.rewards = (u.rewards * reward_scale).astype(np.float32)
        raw = unroll_to_proto(u, "gym").SerializeToString()
        encoding, body = encode_payload_bytes(raw)
        items.append(
            pb.SampledItem(
                index=10 + i,
                key=100 + i if key is None else key,
                weight=0.5,
                encoding=encoding,
                uncompressed_size=len(raw),
                trajectory=body,
            )
        )
    return items


def _encode(items: list[pb.SampledItem], batch_id: int) -> bytes:
    return EnvelopeEncoder("replay/test").encode(pb.SampledBatch(batch_id=batch_id, items=items, buffer_size=40))


def _batch(unrolls: list[Unroll], batch_id: int, reward_scale: float = 1.0) -> bytes:
    return _encode(_items(unrolls, reward_scale), batch_id)


def _core(tmp_path, **kw) -> LearnerCore:
    config = LearnerConfig(algo="impala", env=ENV, run_id="core", checkpoint_dir=str(tmp_path / "ckpt"),
                           model=ModelConfig(hidden=16), **kw)  # fmt: skip
    return LearnerCore(config, TOPICS, SIGNER)


def _payloads(records, topic: str) -> list:
    return [decode_envelope(r.value).payload for r in records if r.topic == topic]


def test_start_records_publish_the_initial_policy_then_announce_its_version(tmp_path):
    core = _core(tmp_path)
    records = core.start_records()
    assert [r.topic for r in records] == [TOPICS.policy, TOPICS.priorities]
    snap = decode_envelope(records[0].value, expect=pb.PolicySnapshot).payload
    verify_snapshot(snap, TRUSTED)
    assert snap.version == 0 and records[0].key == b"tamiyo"
    announce = decode_envelope(records[1].value, expect=pb.PriorityUpdate).payload
    assert announce.batch_id == 0 and announce.learner_step == 0 and not announce.indices
    assert core.final_records() == []  # nothing learned: no final snapshot


def test_one_batch_is_acked_with_priorities_then_snapshotted_and_reported(tmp_path):
    core = _core(tmp_path, checkpoint_every=1)
    (unrolls,) = _unrolls(1)
    outcome = core.handle(_batch(unrolls, batch_id=5))
    assert outcome.rejected is None and outcome.stepped and outcome.checkpoint_due
    assert [r.topic for r in outcome.records] == [TOPICS.priorities, TOPICS.policy, TOPICS.telemetry]
    assert [r.best_effort for r in outcome.records] == [False, False, True]
    (ack,) = _payloads(outcome.records, TOPICS.priorities)
    assert ack.batch_id == 5 and ack.learner_step == 1
    assert list(ack.indices) == [10, 11, 12, 13] and list(ack.keys) == [7] * 4
    assert all(p > 0 and np.isfinite(p) for p in ack.priorities)
    (snap,) = _payloads(outcome.records, TOPICS.policy)
    verify_snapshot(snap, TRUSTED)
    assert snap.version == 1 and snap.learner_step == 1
    (packet,) = _payloads(outcome.records, TOPICS.telemetry)
    names = {m.name for m in packet.metrics}
    assert {"rho_mean", "policy_lag_mean", "is_weight_mean", "updates", "env_steps"} <= names
    assert core.updates == 1 and core.version == 1 and core.env_steps == 40
    assert [i.policy_lag for i in outcome.items] == [1.0] * 4  # behaviour version 0, learner now at 1
    assert core.final_records() == []  # version 1 is already published


def test_snapshot_and_telemetry_cadences(tmp_path):
    core = _core(tmp_path, snapshot_every=2, telemetry_every=2)
    topics = [[r.topic for r in core.handle(_batch(u, batch_id=b)).records] for b, u in enumerate(_unrolls(3), 1)]
    assert topics == [[TOPICS.priorities], [TOPICS.priorities, TOPICS.policy, TOPICS.telemetry], [TOPICS.priorities]]
    (last,) = core.final_records()  # version 3 was never published: the final snapshot carries it
    assert decode_envelope(last.value, expect=pb.PolicySnapshot).payload.version == 3


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not a batch", MalformedRecordError),
        (None, MalformedRecordError),
        (EnvelopeEncoder("x").encode(pb.SampledBatch(batch_id=1)), LeylineError),  # empty batch
    ],
)
def test_bad_batches_are_rejected_whole_and_change_nothing(tmp_path, value, reason):
    core = _core(tmp_path)
    before = [p.detach().clone() for p in core.model.parameters()]
    outcome = core.handle(value)
    assert isinstance(outcome.rejected, reason) and not outcome.stepped
    assert core.rejected_batches == 1 and core.updates == 0
    if value is not None and value.startswith(b"not"):
        assert outcome.records == []  # no batch id to acknowledge
    else:
        assert len(outcome.records) == (0 if value is None else 1)
    assert all(torch.equal(a, b) for a, b in zip(before, core.model.parameters(), strict=True))


def test_a_batch_of_another_env_schema_is_rejected(tmp_path):
    core = _core(tmp_path)
    host_sim = _unrolls(1, env="host-sim")[0]
    outcome = core.handle(_batch(host_sim, batch_id=1))
    assert isinstance(outcome.rejected, ValueError) and core.updates == 0
    # Still acknowledged, without priorities, so the replay frees its in-flight slot at once (issue 12 item 1).
    [ack_record] = outcome.records
    ack = decode_envelope(ack_record.value, expect=pb.PriorityUpdate).payload
    assert ack_record.topic == core.topics.priorities and ack.batch_id == 1 and not ack.priorities
    # Every item is named, for the replay to evict (issue 12, "a list of rejected item keys").
    assert list(ack.rejected_indices) == [10 + i for i in range(len(host_sim))]
    assert list(ack.rejected_keys) == [7] * len(host_sim) and core.rejected_items == len(host_sim)


def test_a_batch_whose_item_key_the_ack_could_not_carry_is_dead_lettered_unacknowledged(tmp_path):
    """Found by the fuzz: an item key of 2**64 - 1 was echoed into an ack that the replay then refused."""
    core = _core(tmp_path)
    items = _items(_unrolls(1)[0])
    items[0].key = 2**64 - 1
    outcome = core.handle(_encode(items, batch_id=3))
    assert isinstance(outcome.rejected, LeylineError) and outcome.records == [] and not outcome.trained


def test_a_batch_with_some_bad_items_trains_on_the_rest_exactly_and_names_the_bad_ones(tmp_path):
    """One corrupt and one off-schema item among four: the step equals a step on the two good items alone,
    the ack carries their priorities and names the bad ones, and the record is dead-lettered once."""
    good = _items(_unrolls(1)[0], key=None)
    corrupt = pb.SampledItem()
    corrupt.CopyFrom(good[1])
    corrupt.trajectory = b"\x28\xb5\x2f\xfd garbage"  # a zstd magic number, then nothing decodable
    off_schema = _items(_unrolls(1, env="host-sim")[0][:1], key=None)[0]
    off_schema.index, off_schema.key = 13, 103
    mixed = [good[0], corrupt, good[2], off_schema]

    core, alone = _core(tmp_path / "a"), _core(tmp_path / "b")
    outcome = core.handle(_encode(mixed, batch_id=4))
    reference = alone.handle(_encode([good[0], good[2]], batch_id=4))

    assert outcome.trained and outcome.stepped and isinstance(outcome.rejected, LeylineError)
    assert str(outcome.rejected).startswith("2 of 4 items rejected")
    (ack,) = _payloads(outcome.records, TOPICS.priorities)
    (ref_ack,) = _payloads(reference.records, TOPICS.priorities)
    assert list(ack.indices) == [10, 12] and list(ack.keys) == [100, 102]
    assert list(ack.priorities) == list(ref_ack.priorities) and len(ack.priorities) == 2
    assert list(ack.rejected_indices) == [11, 13] and list(ack.rejected_keys) == [101, 103]
    assert core.rejected_items == 2 and core.rejected_batches == 0 and core.env_steps == alone.env_steps
    assert all(torch.equal(a, b) for a, b in zip(core.model.parameters(), alone.model.parameters(), strict=True))


def test_a_refused_step_acks_without_priorities_reports_and_withholds_the_snapshot(tmp_path):
    core = _core(tmp_path)
    (unrolls,) = _unrolls(1)
    outcome = core.handle(_batch(unrolls, batch_id=9, reward_scale=3e38))  # finite rewards, overflowing loss
    assert outcome.rejected is None and not outcome.stepped and not outcome.checkpoint_due
    assert [r.topic for r in outcome.records] == [TOPICS.priorities, TOPICS.telemetry]
    (ack,) = _payloads(outcome.records, TOPICS.priorities)
    assert ack.batch_id == 9 and ack.learner_step == 0 and not ack.priorities
    (packet,) = _payloads(outcome.records, TOPICS.telemetry)
    assert packet.health == pb.HEALTH_DEGRADED and [e.name for e in packet.events] == ["update_skipped"]
    assert core.updates == 0 and core.algorithm.breaker.total_failures == 1


def test_checkpoint_then_resume_continues_exactly(tmp_path):
    core = _core(tmp_path)
    for b, unrolls in enumerate(_unrolls(2), 1):
        core.handle(_batch(unrolls, batch_id=b))
    core.checkpoint()
    resumed = _core(tmp_path, resume=True)
    assert (resumed.updates, resumed.version, resumed.env_steps) == (2, 2, 80)
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.parameters(), core.model.parameters(), strict=True))
    sa, sb = resumed.algorithm.optimizer.state_dict(), core.algorithm.optimizer.state_dict()
    for pid, state in sb["state"].items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(sa["state"][pid][k]), torch.as_tensor(v))


def test_ppo_core_acks_with_an_empty_priority_list(tmp_path):
    config = LearnerConfig(algo="ppo", env=ENV, model=ModelConfig(hidden=16))
    core = LearnerCore(config, TOPICS, SIGNER)
    (unrolls,) = _unrolls(1)
    outcome = core.handle(_batch(unrolls, batch_id=3))
    (ack,) = _payloads(outcome.records, TOPICS.priorities)
    assert outcome.stepped and ack.batch_id == 3 and ack.learner_step == 1 and not ack.indices


def test_unknown_algorithm_is_refused(tmp_path):
    with pytest.raises(ValueError, match="algo"):
        LearnerCore(LearnerConfig(algo="sac", env=ENV), TOPICS, SIGNER)


def _verified(core: LearnerCore) -> VerifiedSnapshot:
    record = next(r for r in core.start_records() if r.topic == core.topics.policy)
    snapshot = SnapshotVerifier(TRUSTED, "tamiyo", core.schema).verify(record.value)
    assert snapshot is not None
    return snapshot


def test_a_restarted_learner_continues_after_the_published_versions_with_their_weights(tmp_path):
    """Issue 12 item 5: versions never go backwards.  A fresh learner on a run whose topic holds version 2
    takes that snapshot's weights and version, so its next snapshot is 3 (subscribers ignored 0, 1, 2)."""
    first = _core(tmp_path / "a")
    for i, unrolls in enumerate(_unrolls(2)):
        assert first.handle(_batch(unrolls, batch_id=i + 1)).stepped
    published = _verified(first)
    assert published.version == 2

    fresh = _core(tmp_path / "b", seed=7)
    assert not all(torch.equal(a, b) for a, b in zip(fresh.model.parameters(), first.model.parameters(), strict=True))
    assert "weights of version 2" in fresh.continue_after(2, published)
    assert fresh.version == 2
    assert all(torch.equal(a, b) for a, b in zip(fresh.model.parameters(), first.model.parameters(), strict=True))
    outcome = fresh.handle(_batch(_unrolls(1, seed=9)[0], batch_id=5))
    assert [s.version for s in _payloads(outcome.records, fresh.topics.policy)] == [3]

    # Another network (other width): its own weights, so the next number (version 2 keeps one set of weights).
    other = LearnerCore(
        LearnerConfig(algo="impala", env=ENV, run_id="core", model=ModelConfig(hidden=8)), TOPICS, SIGNER
    )
    assert "its own weights" in other.continue_after(2, published) and other.version == 3
    # Nothing newer than what the learner has (it resumed from a checkpoint at least as new): no change.
    assert first.continue_after(1, None) == "nothing newer published" and first.version == 2
    # A higher version number seen without a verifiable snapshot (e.g. unsigned): after it, own weights.
    fresh.continue_after(10, None)
    assert fresh.version == 11
    # Only an older verified snapshot than the newest number: its weights, but not the newest number.
    late = _core(tmp_path / "c")
    assert "weights of version 2" in late.continue_after(5, published) and late.version == 6


def test_init_from_a_policy_file_sharpened_starts_from_its_logits_times_k(tmp_path):
    """--init-from with --init-sharpen K: the learner's first network is the file's with every logit times K."""
    from tamiyo.policy.batching import collate
    from tamiyo.policy.snapshot import encode_snapshot, write_snapshot

    torch.manual_seed(1)
    saved = TamiyoGNN(make_env(ENV).schema, ModelConfig(hidden=16))
    path, _ = write_snapshot(encode_snapshot(saved, version=3), tmp_path / "init")
    graphs = _unrolls(1)[0][0].graphs
    graph = collate(graphs.select(np.arange(graphs.num_graphs)))
    want = [3.0 * lg for lg in saved(graph).logits]
    plain = _core(tmp_path / "a", init_from=str(path))
    sharp = _core(tmp_path / "b", init_from=str(path), init_sharpen=3.0)
    for got, base in zip(sharp.model(graph).logits, plain.model(graph).logits, strict=True):
        torch.testing.assert_close(got, 3.0 * base, rtol=1e-5, atol=1e-6)
    for got, w in zip(sharp.model(graph).logits, want, strict=True):
        torch.testing.assert_close(got, w, rtol=1e-5, atol=1e-6)
