"""The learner's pure core: one `SampledBatch` record in, what to publish and what to record out.

No Kafka here (`learner/service.py` is the loop around it).  Per batch:
decode and validate every trajectory against the env's graph schema (items that fail are left out,
named in the ack's ``rejected_keys`` for the replay to evict, and the record is dead-lettered with the
first reason; a batch with no usable item is still acknowledged when its batch id could be read), run
one IMPALA step (V-trace, prioritized-replay importance weights) or one PPO update (GAE, minibatch
epochs), and answer with, in send order:

1. the batch's acknowledgement, a `PriorityUpdate` (new |TD| priorities for IMPALA; an empty ack for
   PPO, which also tells the replay the current policy version);
2. every ``snapshot_every`` updates, the network as a signed safetensors `PolicySnapshot` — never
   when the last step was refused (non-finite loss or gradients, circuit breaker) or any weight is
   non-finite;
3. every ``telemetry_every`` updates (and after every refused step) a `TelemetryPacket`.

Checkpoints (weights, optimizer, counters; no pickle) go to disk every ``checkpoint_every`` updates
(the loop calls `checkpoint` when an outcome says so) and `LearnerCore` resumes from them exactly.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope, decode_payload_bytes, parse_message
from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.errors import InvalidFieldError, LeylineError
from tamiyo.contracts.packing import unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.records import OutgoingRecord
from tamiyo.contracts.signing import PolicySigner
from tamiyo.contracts.telemetry import Event, telemetry_packet
from tamiyo.contracts.topics import Topics
from tamiyo.contracts.unroll import Unroll
from tamiyo.learner.checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from tamiyo.learner.impala import ImpalaConfig, ImpalaLearner
from tamiyo.learner.ppo import PPOConfig, PPOLearner
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.signing import signed_snapshot
from tamiyo.policy.snapshot import read_policy_file, snapshot_tensors
from tamiyo.policy.verification import VerifiedSnapshot

log = logging.getLogger(__name__)
ALGOS = ("impala", "ppo")
LOSS_NAMES = ("policy_loss", "baseline_loss", "value_loss", "entropy_loss", "loss")


def skip_reason(metrics: dict[str, float]) -> str:
    """Why an update made no optimizer step, read from the algorithm's metrics ("" if it made one)."""
    if metrics.get("skipped", 0.0) == 0.0:
        return ""
    if metrics.get("breaker_open"):
        return "circuit breaker open"
    if metrics.get("early_stopped") and not metrics.get("skipped_steps"):
        return "KL early stop before the first step"
    return "non-finite loss or gradients"


def update_skipped(metrics: dict[str, float]) -> Event:
    return Event("update_skipped", skip_reason(metrics), pb.SEVERITY_WARNING)


@dataclass
class LearnerConfig:
    algo: str = "impala"
    env: str = "host-sim"
    policy_id: str = "tamiyo"
    run_id: str = ""
    snapshot_every: int = 1
    telemetry_every: int = 1
    checkpoint_dir: str | None = None
    checkpoint_every: int = 50
    resume: bool = False
    init_from: str | None = None  # a policy.safetensors (with policy.json beside it)
    init_sharpen: float = 1.0  # the init_from policy's logits times this (TamiyoGNN.sharpen) before training
    max_updates: int | None = None
    max_seconds: float | None = None
    # Stop after this long without a batch (once one arrived): re-running a recorded stream offline.
    stop_when_idle_s: float | None = None
    group_id: str | None = None
    device: str = "cpu"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    impala: ImpalaConfig = field(default_factory=ImpalaConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)


@dataclass
class ItemTrace:
    """What the loop records for one trained trajectory: its trace context and the lag it was trained at."""

    trace_parent: str
    policy_lag: float


@dataclass
class DecodedBatch:
    """A `batches` record decoded and checked, or why it cannot be trained on."""

    sampled: pb.SampledBatch | None  # None: nothing of it can be trained on
    unrolls: list[Unroll]  # the usable items, in batch order
    rejected: LeylineError | ValueError | None  # why the record (or some of its items) is dead-lettered
    decode_ms: float
    batch_id: int | None = None  # of a rejected batch whose envelope decoded (so it can still be acknowledged)
    items: list[pb.SampledItem] = field(default_factory=list)  # the usable items, one per unroll
    rejected_items: list[pb.SampledItem] = field(default_factory=list)  # named in the ack for eviction


@dataclass
class BatchOutcome:
    records: list[OutgoingRecord] = field(default_factory=list)  # to publish, in this order
    rejected: LeylineError | ValueError | None = None  # dead-letter the record with this reason
    trained: bool = False  # the batch's usable items were trained on (False: only an ack, if anything)
    stepped: bool = False
    checkpoint_due: bool = False
    batch_id: int = 0
    decode_ms: float = 0.0
    batch_latency_ms: float | None = None  # replay publish -> now
    metrics: dict[str, float] = field(default_factory=dict)
    items: list[ItemTrace] = field(default_factory=list)


class LearnerCore:
    def __init__(self, config: LearnerConfig, topics: Topics, signer: PolicySigner) -> None:
        if config.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}")
        self.config = config
        self.topics = topics
        self.signer = signer
        self.schema = env_schema(config.env)
        self.encoder = EnvelopeEncoder(source="learner", correlation_id=config.run_id)
        torch.manual_seed(config.seed)
        counters: dict = {}
        checkpoint_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        if config.resume and checkpoint_dir is not None and checkpoint_dir.exists():
            model, counters = load_checkpoint(checkpoint_dir, config.device)
            log.info("resuming from %s at update %s", checkpoint_dir, counters.get("updates"))
        elif config.init_from:
            model, _ = read_policy_file(config.init_from, config.device)
            model.sharpen(config.init_sharpen)
            log.info("initialised from %s (logits x %g)", config.init_from, config.init_sharpen)
        else:
            model = TamiyoGNN(self.schema, config.model)
        if model.schema != self.schema:
            raise ValueError("the initial policy was built for another graph schema")
        self.model = model.to(config.device)
        self.algorithm: ImpalaLearner | PPOLearner
        if config.algo == "impala":
            self.algorithm = ImpalaLearner(self.model, config.impala, config.device)
        else:
            self.algorithm = PPOLearner(self.model, config.ppo, config.device, seed=config.seed)
        if counters:
            assert checkpoint_dir is not None
            restore_optimizer(checkpoint_dir, self.algorithm.optimizer, config.device)
            self.algorithm.version = int(counters["version"])
        # Restored from a checkpoint: its weights and optimizer state belong together, and the batches after
        # it (uncommitted: the loop commits only what a checkpoint holds) are read and trained on again.
        self.resumed = bool(counters)
        self.updates = int(counters.get("updates", 0))
        self.env_steps = int(counters.get("env_steps", 0))
        self.last_snapshot_version = -1
        self.rejected_batches = 0
        self.rejected_items = 0
        self.last_metrics: dict[str, float] = {}
        self._recent_rates: deque[tuple[float, int]] = deque(maxlen=50)

    @property
    def version(self) -> int:
        """The policy version: successful learner steps (IMPALA) or completed PPO iterations."""
        return self.algorithm.version

    def continue_after(self, published: int, snapshot: VerifiedSnapshot | None) -> str:
        """Versions never go backwards: a learner (re)started on a run whose policy topic already holds
        versions up to ``published`` of its policy continues after them.  Subscribers accept only newer
        versions, so a learner starting again at 0 was ignored until it passed the old count.  Without a
        checkpoint, it also takes the weights of ``snapshot`` (the newest verified one) when they fit its
        network.  Returns what it did, for the log."""
        if published < self.version:
            return "nothing newer published"
        before, took = self.version, False
        fits = snapshot is not None and snapshot.schema == self.schema and snapshot.model_config == self.model.config
        # A resumed learner keeps its checkpoint's weights (they match its optimizer state, and it trains again
        # on the batches since the checkpoint); a fresh one starts from the newest published weights.
        if snapshot is not None and fits and snapshot.version > self.version and not self.resumed:
            self.model.load_state_dict(snapshot_tensors(snapshot.message.weights), strict=True)
            took = True
        # The start snapshot goes out at the current version: version `published` again only with exactly
        # its weights, otherwise the next number (one version number, one set of weights, as compaction keeps
        # the last record per key).
        same = took and snapshot is not None and snapshot.version == published
        self.algorithm.version = published if same else published + 1
        weights = f"the weights of version {snapshot.version}" if took and snapshot is not None else "its own weights"
        return f"continuing at version {self.version} (was {before}) with {weights}"

    # ------------------------------------------------------------ records at start and end

    def start_records(self) -> list[OutgoingRecord]:
        """The initial snapshot (actors start acting with it) and an empty ack announcing the version."""
        records = [r for r in (self._snapshot_record(),) if r is not None]
        announce = pb.PriorityUpdate(batch_id=0, learner_step=self.version)
        return [*records, OutgoingRecord(self.topics.priorities, self.encoder.encode(announce), b"learner")]

    def final_records(self) -> list[OutgoingRecord]:
        """The last snapshot, unless the newest version is already published (or nothing was learned)."""
        if not self.updates or self.version == self.last_snapshot_version:
            return []
        record = self._snapshot_record()
        return [record] if record is not None else []

    # ------------------------------------------------------------ one batch

    def handle(self, value: bytes | None) -> BatchOutcome:
        """Train on one `batches` record; see the module docstring.  Blocking (run it off the event loop)."""
        return self.train(self.decode(value))

    def decode(self, value: bytes | None) -> DecodedBatch:
        """Decode and check a `batches` record (changes no state: the loop runs it ahead, in another thread,
        while the previous batch trains)."""
        t0 = time.perf_counter()
        try:
            sampled = decode_envelope(value, expect=pb.SampledBatch).payload
        except LeylineError as err:
            return DecodedBatch(None, [], err, (time.perf_counter() - t0) * 1e3)
        unrolls: list[Unroll] = []
        items: list[pb.SampledItem] = []
        bad: list[pb.SampledItem] = []
        first_error: LeylineError | ValueError | None = None
        for item in sampled.items:
            try:
                unrolls.append(self._decode_item(item))
                items.append(item)
            except (LeylineError, ValueError) as err:
                bad.append(item)
                first_error = first_error or err
        rejected = _rejection(first_error, len(bad), len(sampled.items)) if sampled.items else None
        if not unrolls:
            reason = rejected or InvalidFieldError("empty batch")
            ms = (time.perf_counter() - t0) * 1e3
            return DecodedBatch(None, [], reason, ms, batch_id=int(sampled.batch_id), rejected_items=bad)
        ms = (time.perf_counter() - t0) * 1e3
        return DecodedBatch(sampled, unrolls, rejected, ms, items=items, rejected_items=bad)

    def train(self, decoded: DecodedBatch) -> BatchOutcome:
        """One learner step on a decoded batch, and what to publish about it."""
        outcome = BatchOutcome(decode_ms=decoded.decode_ms, rejected=decoded.rejected)
        self.rejected_items += len(decoded.rejected_items)
        if decoded.sampled is None:
            self.rejected_batches += 1
            if decoded.batch_id is not None:
                # Acknowledged without priorities: the replay frees its in-flight slot now, not after
                # its ack timeout (120 s by default), evicts the items, and nothing is learned from them.
                ack = pb.PriorityUpdate(batch_id=decoded.batch_id, learner_step=self.version)
                _name_rejected(ack, decoded.rejected_items)
                outcome.records.append(OutgoingRecord(self.topics.priorities, self.encoder.encode(ack), b"learner"))
            return outcome
        sampled, unrolls, items = decoded.sampled, decoded.unrolls, decoded.items
        outcome.trained = True
        if sampled.created_at_ns:
            outcome.batch_latency_ms = max(0.0, (time.time_ns() - sampled.created_at_ns) / 1e6)
        outcome.batch_id = int(sampled.batch_id)
        weights = np.asarray([it.weight for it in items], dtype=np.float32)
        t0 = time.perf_counter()
        metrics, priorities = self._train(unrolls, weights)
        step_s = time.perf_counter() - t0
        steps = sum(u.length for u in unrolls)
        stepped = outcome.stepped = metrics.get("skipped", 0.0) == 0.0
        if stepped:
            self.updates += 1
            self.env_steps += steps
        self._recent_rates.append((time.monotonic(), steps))

        ack = pb.PriorityUpdate(batch_id=sampled.batch_id, learner_step=self.version)
        if len(priorities) == len(items):
            ack.indices.extend(it.index for it in items)
            ack.keys.extend(it.key for it in items)
            ack.priorities.extend(float(p) for p in priorities)
        _name_rejected(ack, decoded.rejected_items)
        outcome.records.append(OutgoingRecord(self.topics.priorities, self.encoder.encode(ack), b"learner"))
        outcome.items = [
            ItemTrace(item.trace_parent, float(self.version - unroll.policy_versions.mean()))
            for item, unroll in zip(items, unrolls, strict=True)
        ]
        metrics.update(
            {
                "updates": float(self.updates),
                "env_steps": float(self.env_steps),
                "step_ms": step_s * 1e3,
                "batch_unrolls": float(len(unrolls)),
                "buffer_size": float(sampled.buffer_size),
                "is_weight_mean": float(weights.mean()),
                "samples_per_s": self._samples_per_s(),
                "policy_lag_mean": float(
                    np.mean([self.version - int(stepped) - u.policy_versions.mean() for u in unrolls])
                ),
                "episode_return_mean": _mean_episode_return(unrolls),
                "rejected_batches": float(self.rejected_batches),
                "rejected_items": float(self.rejected_items),
                "breaker_failures": float(self.algorithm.breaker.total_failures),
                "process_cpu_s": time.process_time(),
            }
        )
        self.last_metrics = outcome.metrics = metrics
        cfg = self.config
        if stepped and self.updates % cfg.snapshot_every == 0:
            snapshot = self._snapshot_record()
            if snapshot is not None:
                outcome.records.append(snapshot)
        if self.updates % cfg.telemetry_every == 0 or not stepped:
            outcome.records.append(self._telemetry_record(metrics))
        outcome.checkpoint_due = bool(stepped and cfg.checkpoint_dir and self.updates % cfg.checkpoint_every == 0)
        return outcome

    def _decode_item(self, item: pb.SampledItem) -> Unroll:
        raw = decode_payload_bytes(item.trajectory, item.encoding, item.uncompressed_size)
        unroll = unroll_from_proto(parse_message(pb.Trajectory, raw))
        unroll.validate(self.schema, structure_checked=True)  # shapes, masks and node counts of *this* env
        return unroll

    def _train(self, unrolls: list[Unroll], weights: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        if isinstance(self.algorithm, ImpalaLearner):
            result = self.algorithm.step(unrolls, importance_weights=weights)
            return dict(result.metrics), result.priorities
        return dict(self.algorithm.update(unrolls)), np.zeros(0)

    def _samples_per_s(self) -> float:
        if len(self._recent_rates) < 2:
            return 0.0
        span = self._recent_rates[-1][0] - self._recent_rates[0][0]
        return sum(s for _, s in list(self._recent_rates)[1:]) / span if span > 0 else 0.0

    # ------------------------------------------------------------ outputs

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def _snapshot_record(self) -> OutgoingRecord | None:
        if not self.weights_finite():
            log.error("non-finite weights: snapshot %d withheld", self.version)
            return None
        snap = signed_snapshot(
            self.model,
            version=self.version,
            policy_id=self.config.policy_id,
            signer=self.signer,
            algo=self.config.algo,
            learner_step=self.updates,
        )
        self.last_snapshot_version = self.version
        return OutgoingRecord(self.topics.policy, self.encoder.encode(snap), self.config.policy_id.encode())

    def _telemetry_record(self, metrics: dict[str, float]) -> OutgoingRecord:
        healthy = metrics.get("skipped", 0.0) == 0.0
        packet = telemetry_packet(
            "learner",
            self.config.run_id,
            metrics,
            healthy=healthy,
            labels={"algo": self.config.algo},
            events=() if healthy else (update_skipped(metrics),),
        )
        return OutgoingRecord(self.topics.telemetry, self.encoder.encode(packet), b"learner", best_effort=True)

    def checkpoint(self) -> bool:
        """Write the checkpoint; False without a directory or with non-finite weights (nothing written).  Blocking."""
        if not self.config.checkpoint_dir or not self.weights_finite():
            return False
        counters = {"updates": self.updates, "version": self.version, "env_steps": self.env_steps}
        save_checkpoint(self.config.checkpoint_dir, self.model, self.algorithm.optimizer, counters)
        return True

    def summary(self) -> dict[str, float]:
        return {"updates": float(self.updates), "version": float(self.version), "env_steps": float(self.env_steps)}


def _rejection(first: LeylineError | ValueError | None, bad: int, total: int) -> LeylineError | ValueError | None:
    """The dead-letter reason for a batch with ``bad`` of ``total`` items unusable: the first item's error, of
    its own type (the dead-letter reason names it), saying how many were left out."""
    if first is None:
        return None
    try:
        return type(first)(f"{bad} of {total} items rejected; first: {first}")
    except TypeError:  # an error type with another constructor
        return first


def _name_rejected(ack: pb.PriorityUpdate, items: list[pb.SampledItem]) -> None:
    ack.rejected_indices.extend(it.index for it in items)
    ack.rejected_keys.extend(it.key for it in items)


def _mean_episode_return(unrolls: list[Unroll]) -> float:
    returns = np.concatenate([u.episode_returns for u in unrolls])
    return float(returns.mean()) if returns.size else float("nan")
