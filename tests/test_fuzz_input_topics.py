"""Every input topic's core, fuzzed with 10⁴ hostile records each (the learner: 10⁴ decoded, 600 trained on; issue 12):
valid records of that topic with one field set to an extreme value (protobuf reflection: huge,
negative-as-unsigned, NaN/inf, empty, long, unknown enum), truncated or bit-flipped bytes, random bytes
and tombstones.

Each core must take every record without raising: apply it, or name the reason it refuses it (a
`LeylineError` or ValueError that the loop dead-letters), and stay usable afterwards.  Hypothesis
draws the mutation plan (which record, which mutation, which field, which value), so a failure
shrinks to the one record that breaks a core."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.random_unrolls import random_unroll
from tamiyo.contracts.topics import Topics
from tamiyo.learner.core import LearnerConfig, LearnerCore
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.signing import signed_snapshot
from tamiyo.policy.swappable import SwappablePolicy
from tamiyo.policy.verification import SnapshotAcceptor, SnapshotVerifier
from tamiyo.replay_store.core import IncomingRecord, ReplayCore
from tamiyo.replay_store.replay_config import ReplayConfig
from tests.keys import SIGNER, TRUSTED

pytestmark = pytest.mark.slow
RECORDS_PER_EXAMPLE, EXAMPLES = 100, 100  # 10⁴ hostile records per input topic
ENV = "host-sim"
SCHEMA = env_schema(ENV)
INTS = (0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**40, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1)
FLOATS = (math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 1e-45, -0.0)
I32, U32, I64, U64 = (-(2**31), 2**31 - 1), (0, 2**32 - 1), (-(2**63), 2**63 - 1), (0, 2**64 - 1)
RANGES = {  # what each protobuf integer type can hold: an extreme outside it cannot be set at all
    FD.TYPE_INT32: I32, FD.TYPE_SINT32: I32, FD.TYPE_SFIXED32: I32, FD.TYPE_ENUM: I32,
    FD.TYPE_UINT32: U32, FD.TYPE_FIXED32: U32,
    FD.TYPE_INT64: I64, FD.TYPE_SINT64: I64, FD.TYPE_SFIXED64: I64,
    FD.TYPE_UINT64: U64, FD.TYPE_FIXED64: U64,
}  # fmt: skip

# One mutation: (which record, kind, which field, which value).
# Kinds: 0-5 set a field, 6 truncate, 7 flip a bit, 8 random bytes, 9 a tombstone (None).
PLAN = st.lists(
    st.tuples(st.integers(0, 2**16), st.integers(0, 9), st.integers(0, 2**16), st.integers(0, 2**16)),
    min_size=RECORDS_PER_EXAMPLE,
    max_size=RECORDS_PER_EXAMPLE,
)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fields(msg: Message) -> list[tuple[Message, FD]]:
    """Every (message, field) in ``msg`` and the messages nested in it."""
    out: list[tuple[Message, FD]] = []
    for field in msg.DESCRIPTOR.fields:
        out.append((msg, field))
        if field.type == FD.TYPE_MESSAGE:
            if field.is_repeated:
                children = list(getattr(msg, field.name))
                if field.message_type.GetOptions().map_entry:
                    continue
            else:
                children = [getattr(msg, field.name)] if msg.HasField(field.name) else []
            for child in children:
                out.extend(_fields(child))
    return out


def _set_extreme(msg: Message, field: FD, pick: int) -> None:
    name, repeated = field.name, field.is_repeated
    if field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        value_type = field.message_type.fields_by_name["value"].type
        entry = FLOATS[pick % len(FLOATS)] if value_type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE) else "x" * (pick % 5000)
        getattr(msg, name)[f"fuzz{pick % 3}"] = entry
        return
    if field.type == FD.TYPE_MESSAGE:
        if repeated:
            items = getattr(msg, name)
            if pick % 2 and len(items):
                items.add().CopyFrom(items[pick % len(items)])  # a duplicate element
            else:
                msg.ClearField(name)
        else:
            msg.ClearField(name)
        return
    if field.type in RANGES:
        lo, hi = RANGES[field.type]
        fitting = [v for v in INTS if lo <= v <= hi]
        value: object = fitting[pick % len(fitting)]
    elif field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        value = FLOATS[pick % len(FLOATS)]
    elif field.type == FD.TYPE_BOOL:
        value = bool(pick % 2)
    elif field.type == FD.TYPE_STRING:
        value = ("", "x" * 5000, "\n\x00é", "tamiyo")[pick % 4]
    else:  # bytes: empty, cut, flipped, or another field's length of zeros
        current = b"" if repeated else getattr(msg, name)
        value = (b"", current[: pick % (len(current) + 1)], bytes(b ^ 0xFF for b in current[:64]) + current[64:],
                 bytes(pick % 4096))[pick % 4]  # fmt: skip
    if repeated:
        getattr(msg, name).append(value)
    else:
        setattr(msg, name, value)


def hostile(
    valid: list[Message], plan: list[tuple[int, int, int, int]], encoder: EnvelopeEncoder
) -> list[bytes | None]:
    """One hostile record per plan step, each made from one of the ``valid`` payloads."""
    out: list[bytes | None] = []
    rng = np.random.default_rng(len(plan))
    for which, kind, field_pick, value_pick in plan:
        base = valid[which % len(valid)]
        if kind <= 5:
            msg = type(base)()
            msg.CopyFrom(base)
            fields = _fields(msg)
            target, field = fields[field_pick % len(fields)]
            _set_extreme(target, field, value_pick)
            out.append(encoder.encode(msg))
            continue
        raw = encoder.encode(base)
        if kind == 6:
            out.append(raw[: field_pick % len(raw)])
        elif kind == 7:
            flipped = bytearray(raw)
            flipped[field_pick % len(raw)] ^= 1 << (value_pick % 8)
            out.append(bytes(flipped))
        elif kind == 8:
            out.append(rng.bytes(value_pick % 300))
        else:
            out.append(None)
    return out


def _trajectories(count: int, seed: int = 0) -> list[pb.Trajectory]:
    rng = np.random.default_rng(seed)
    return [unroll_to_proto(random_unroll(SCHEMA, 4, rng), "env-0") for _ in range(count)]


# ---------------------------------------------------------------- trajectories -> the replay


@FUZZ
@given(PLAN)
def test_trajectories_fuzz_the_replay_core(plan):
    core = ReplayCore(ReplayConfig(batch_size=2, env=ENV))
    encoder = EnvelopeEncoder("actor/fuzz", producer_id="fuzz:1")
    values = hostile(_TRAJECTORIES, plan, encoder)
    result = core.ingest([IncomingRecord("p0", i, v, "") for i, v in enumerate(values)])
    assert all(isinstance(err, LeylineError) for _, err in result.rejected)
    assert core.stats.inserted + core.stats.duplicates + len(result.rejected) == len(values)
    assert result.commit == {"p0": len(values)}
    core.next_batch()  # whatever was stored can still be sampled


_TRAJECTORIES = _trajectories(6)


# ---------------------------------------------------------------- priorities -> the replay


@FUZZ
@given(PLAN)
def test_priority_updates_fuzz_the_replay_core(plan):
    core = ReplayCore(ReplayConfig(batch_size=2, max_in_flight=8))
    encoder = EnvelopeEncoder("actor/fuzz", producer_id="fuzz:1")
    core.ingest([IncomingRecord("p0", i, encoder.encode(t), "") for i, t in enumerate(_TRAJECTORIES)])
    batches = [b for b in (core.next_batch() for _ in range(3)) if b is not None]
    valid = []
    for n, batch in enumerate(batches):
        update = pb.PriorityUpdate(batch_id=batch.batch_id, learner_step=1)
        kept, bad = (batch.items, []) if n % 2 else (batch.items[1:], batch.items[:1])  # some name rejected items
        update.indices.extend(it.index for it in kept)
        update.keys.extend(it.key for it in kept)
        update.priorities.extend([1.5] * len(kept))
        update.rejected_indices.extend(it.index for it in bad)
        update.rejected_keys.extend(it.key for it in bad)
        valid.append(update)
    values = hostile(valid, plan, EnvelopeEncoder("learner"))
    rejected = core.apply_acks(values)
    assert all(isinstance(err, LeylineError) for _, err in rejected)
    assert len(core.outstanding) <= len(batches)
    core.next_batch()  # priorities stay usable: sampling after the acks does not raise


# ---------------------------------------------------------------- batches -> the learner


@pytest.fixture(scope="module")
def learner_core(tmp_path_factory) -> LearnerCore:
    config = LearnerConfig(algo="impala", env=ENV, run_id="fuzz", model=ModelConfig(hidden=8))
    return LearnerCore(config, Topics.for_run("fuzz"), SIGNER)


def _batches() -> list[pb.SampledBatch]:
    encoder = EnvelopeEncoder("actor/fuzz", producer_id="fuzz:1")
    core = ReplayCore(ReplayConfig(batch_size=2))
    core.ingest([IncomingRecord("p0", i, encoder.encode(t), "") for i, t in enumerate(_trajectories(4, seed=1))])
    return [b for b in (core.next_batch() for _ in range(2)) if b is not None]


@FUZZ
@given(PLAN)
def test_batches_fuzz_the_learner_decode(learner_core, plan):
    """10⁴ hostile batches through the learner's edge (decode and validate, no step): every item of a batch
    whose envelope decodes is either usable (an unroll of this env) or named for the ack, never both."""
    for value in hostile(_BATCHES, plan, EnvelopeEncoder("replay")):
        decoded = learner_core.decode(value)
        assert decoded.rejected is None or isinstance(decoded.rejected, LeylineError | ValueError)
        if decoded.sampled is None:
            assert decoded.rejected is not None and not decoded.unrolls
            continue
        assert len(decoded.unrolls) == len(decoded.items) > 0
        assert len(decoded.items) + len(decoded.rejected_items) == len(decoded.sampled.items)
        assert (decoded.rejected is None) == (not decoded.rejected_items)
        for unroll in decoded.unrolls:
            unroll.validate(SCHEMA)


# 600 batches trained on, not 10⁴: most mutated batches still decode and train a step (~50 ms each here).
# The learner core is module-scoped on purpose: one learner takes every hostile batch in turn.
@settings(
    max_examples=24, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(plan=PLAN)
def test_batches_fuzz_the_learner_core(learner_core, plan):
    values = hostile(_BATCHES, plan[:25], EnvelopeEncoder("replay"))
    priorities = learner_core.topics.priorities
    for value in values:
        outcome = learner_core.handle(value)
        assert outcome.rejected is None or isinstance(outcome.rejected, LeylineError | ValueError)
        acks = [decode_envelope(r.value, expect=pb.PriorityUpdate).payload for r in outcome.records
                if r.topic == priorities]  # fmt: skip
        try:
            batch = decode_envelope(value, expect=pb.SampledBatch).payload
        except LeylineError:
            assert outcome.rejected is not None and not acks  # nothing to acknowledge: dead-lettered
            continue
        # A batch whose envelope decodes is acknowledged exactly once (its in-flight slot is freed), and the
        # ack names every item: with its priority, or as rejected (then the record is also dead-lettered).
        (ack,) = acks
        assert ack.batch_id == batch.batch_id
        assert len(ack.rejected_keys) == 0 or outcome.rejected is not None
        named = len(ack.indices) + len(ack.rejected_indices)
        assert named == len(batch.items) or (not ack.indices and not outcome.stepped)
        assert all(math.isfinite(p) and p >= 0 for p in ack.priorities)
    assert all(torch.isfinite(p).all() for p in learner_core.model.parameters())


_BATCHES = _batches()


# ---------------------------------------------------------------- policy -> actors and serving


def _snapshots() -> list[pb.PolicySnapshot]:
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, ModelConfig(hidden=8, layers=("sage",)))
    return [signed_snapshot(model, version=v, policy_id="tamiyo", signer=SIGNER) for v in (1, 2)]


@FUZZ
@given(PLAN)
def test_policy_snapshots_fuzz_the_acceptor(plan):
    acceptor = SnapshotAcceptor(SwappablePolicy(), SnapshotVerifier(TRUSTED, "tamiyo", SCHEMA))
    values = hostile(_SNAPSHOTS, plan, EnvelopeEncoder("learner"))
    for value in values:
        before = acceptor.policy.version
        if acceptor.accept(value):  # only an intact, signed, newer snapshot of ours
            snap = decode_envelope(value, expect=pb.PolicySnapshot).payload
            assert snap.SerializeToString() in _INTACT and acceptor.policy.version > before
    assert acceptor.stats.loaded <= len(_SNAPSHOTS)


_SNAPSHOTS = _snapshots()
_INTACT = {s.SerializeToString() for s in _SNAPSHOTS}


# ---------------------------------------------------------------- state -> serving


def _states() -> list[pb.SystemStatePacket]:
    from tamiyo.producers.controllers import make_controller
    from tamiyo.producers.envs import make_env

    out = []
    for i in range(3):
        env, ctl = make_env(ENV, seed=i), make_controller("random", seed=i)
        obs = env.reset()
        ctl.reset()
        for _ in range(i + 1):
            obs = env.step(ctl.act(obs, env.info())).observation
        out.append(env.state_packet())
    return out


@FUZZ
@given(PLAN)
def test_state_packets_fuzz_the_serving_decider(plan):
    from tamiyo.consumers.serve_core import Decider, GreedyPolicy
    from tamiyo.producers.blueprints import CATALOG

    decider = Decider(_SERVED, SCHEMA, tuple(b.blueprint_id for b in CATALOG))
    values = hostile(_STATES, plan, EnvelopeEncoder("host"))
    decisions = decider.decide([v if v is not None else b"" for v in values])
    assert len(decisions) == len(values)
    for d in decisions:
        assert (d.error is None) == (d.command is not None and bool(d.value))  # a command, or why there is none
    assert isinstance(decider.policy, GreedyPolicy)


_STATES = _states()


def _served():  # type: ignore[no-untyped-def]
    from tamiyo.consumers.serve_core import GreedyPolicy

    torch.manual_seed(0)
    return GreedyPolicy(TamiyoGNN(SCHEMA, ModelConfig(hidden=8)).eval(), version=1)


_SERVED = _served()
