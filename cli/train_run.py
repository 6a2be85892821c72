"""`tamiyo train`: the whole pipeline on one machine, then a report.

broker (local unless --bootstrap) → topics → learner + replay + N actor
processes (each one the same `tamiyo <service>` command a cluster would run)
→ progress from the telemetry topic → stop on --updates/--frames/--minutes,
Ctrl-C or SIGTERM → stop every process it started (actors first, the learner
last so it publishes its final snapshot) → final policy from the policy topic
→ evaluation against the heuristic → runs/<id>/{config.json, metrics.jsonl,
learning_curve.png, report.md, policy.safetensors}.

The run's settings: `train_config`; the service processes: `train_services`; the learning proof's
episode returns: `train_returns`; the policy topic: `policy_topic`; the files of the report: `train_report`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from tamiyo.bus.acls import grant_run_acls
from tamiyo.bus.admin import ensure_topics, topic_has_records
from tamiyo.bus.broker import (
    DEFAULT_DATA_DIR,
    DEFAULT_SECURE_DATA_DIR,
    BrokerError,
    BrokerInfo,
    LocalBroker,
    free_port,
    port_is_free,
)
from tamiyo.bus.clients import KafkaSettings
from tamiyo.cli.policy_topic import newest_verified_snapshot
from tamiyo.cli.run_keys import RunKeys, run_keys
from tamiyo.cli.run_monitor import RunMonitor, RunProgress
from tamiyo.cli.train_config import TrainConfig
from tamiyo.cli.train_config_file import config_to_toml
from tamiyo.cli.train_progress import Budget, progress_text
from tamiyo.cli.train_report import evaluate_policy, write_policy, write_returns, write_run_report
from tamiyo.cli.train_returns import EpisodeReturns, ReturnTracker
from tamiyo.cli.train_services import ServiceProcesses, service_commands, service_role
from tamiyo.contracts.atomic_files import write_atomically
from tamiyo.contracts.topics import Topics

if TYPE_CHECKING:  # tamiyo.policy imports torch: only needed once the services have stopped
    from tamiyo.policy.verification import VerifiedSnapshot

__all__ = ["RunExistsError", "StopSignals", "TrainConfig", "TrainRun"]


class RunExistsError(RuntimeError):
    """The run id is taken on this cluster (its topics hold records): a one-line error, exit code 2."""


class StopSignals:
    """While held, SIGINT and SIGTERM are remembered in ``received`` (the run polls it), not raised."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        self._previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name

    def release(self) -> None:
        """Put the previous handlers back (again: nothing)."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


class TrainRun:
    def __init__(self, config: TrainConfig, settings_template: KafkaSettings | None) -> None:
        """``settings_template``: the cluster to run on; None: the local broker on ``config.data_dir``."""
        self.config = config
        if not config.run_id:
            config.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{config.algo}-{config.env.replace(':', '_')}"
        self.out_dir = Path(config.out) / config.run_id
        self.logs_dir = self.out_dir / "logs"
        self.settings_template = settings_template
        self.settings: KafkaSettings | None = settings_template  # without a template: set by `_connect`
        self.broker: LocalBroker | None = None  # the local broker this run started (not a given or running one)
        self.local: BrokerInfo | None = None  # the local broker the run uses (started by it or not)
        self.topics = Topics.for_run(config.run_id)
        self.services = ServiceProcesses(self.logs_dir, config.torch_threads, max_restarts=config.max_restarts)
        self.returns: EpisodeReturns | None = None  # the learning proof, with --target-return
        if config.target_return is not None:
            self.returns = EpisodeReturns(config.return_window, config.target_return, config.envs_per_actor)
        self.stop_reason = "not started"
        self.keys: RunKeys | None = None  # set by `run`, before anything starts
        # What `run` found, for the Python API (tamiyo.api.train): set once the report is written.
        self.summary: dict[str, Any] = {}
        self.evaluation: dict[str, Any] = {}
        self.policy_path: Path | None = None
        self.report_path: Path | None = None

    def service_commands(self) -> dict[str, list[str]]:
        assert self.settings is not None, "no cluster yet"
        return service_commands(self.config, self.out_dir, self.settings.bootstrap)

    def service_env(self, name: str) -> dict[str, str]:
        """What ``name`` is given in its environment: the cluster's settings (credentials never on a command
        line) and its keys: the private key for the learner, public keys for the others."""
        assert self.settings is not None and self.keys is not None
        keys = self.keys.learner_env() if name == "learner" else self.keys.reader_env()
        # On the local broker each service connects as its own role (least privilege); on a given
        # cluster every service uses the settings `tamiyo train` was given.
        settings = self.local.settings(service_role(name)) if self.local is not None else self.settings
        return settings.to_env() | keys

    # ------------------------------------------------------------ the run

    def run(self) -> int:
        """The run, start to report; the exit code: 0, 1 if a service died, 130 after SIGINT/SIGTERM."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        again = f"tamiyo train --config {self.out_dir / 'config.toml'}"
        header = f"The settings of run {self.config.run_id}.\n`{again}` runs them again, as a new run."
        (self.out_dir / "config.toml").write_text(config_to_toml(self.config, header))
        self.keys = run_keys(self.config.signing_key, self.config.trusted_keys, self.out_dir / "keys")
        print(f"policy signing key {self.keys.key_id}: {self.keys.signing_key}", flush=True)
        started = time.monotonic()
        with StopSignals() as signals:
            try:
                self.settings = self._connect()
                summary, final = asyncio.run(self._on_the_bus(signals, started))
            except BaseException:
                self.services.stop_all()  # a run that fails leaves nothing of its own running:
                self._stop_own_broker()  # the services first (they talk to the broker), then the broker
                raise
            finally:
                self.services.stop_all()
        policy_path = write_policy(final.message, self.out_dir) if final is not None else None
        evaluation = evaluate_policy(self.config, policy_path) if policy_path and signals.received is None else {}
        self._stop_own_broker()
        report = write_run_report(self.out_dir, self.config, summary, evaluation)
        self.summary, self.evaluation, self.policy_path, self.report_path = summary, evaluation, policy_path, report
        print(f"report: {report}", flush=True)
        print(json.dumps({"run_id": self.config.run_id, "out": str(self.out_dir), **summary}), flush=True)
        if signals.received is not None:
            return 130
        return 1 if self.stop_reason.startswith("service") else 0

    def _stop_own_broker(self) -> None:
        if self.broker is not None and not self.config.keep_broker:
            self.broker.down()
            self.broker = None

    def _connect(self) -> KafkaSettings:
        """The given cluster, else the local broker on the data dir: as it is if it runs, else started by this run
        on the port it last used if that is free, else on 9092 if free, else on any free port."""
        if self.settings_template is not None:
            return self.settings_template
        secure = self.config.secure
        data_dir = self.config.data_dir
        if secure and Path(data_dir) == DEFAULT_DATA_DIR:
            data_dir = str(DEFAULT_SECURE_DATA_DIR)
        broker = LocalBroker(data_dir)
        running = broker.running_info()
        if running is not None:  # someone else's: leave it running
            if (running.security_protocol != "PLAINTEXT") != secure:
                mode = "plaintext" if secure else "secure"
                raise BrokerError(f"the broker on {data_dir} is running {mode}; stop it or use another --data-dir")
            self.local = running
            return running.settings("admin")
        port = next((p for p in (broker.last_port(), 9092) if p is not None and port_is_free(p)), None)
        info = broker.up(port=port if port is not None else free_port(), secure=secure)
        self.broker, self.local = broker, info
        print(f"local Kafka broker: {info.to_json()}", flush=True)
        return info.settings("admin")  # the orchestrator: topics, ACLs, progress, the final policy

    def _broker_pid(self) -> int:
        info = self.broker.running_info() if self.broker is not None else None
        return info.pid if info else 0

    async def _on_the_bus(self, signals: StopSignals, started: float) -> tuple[dict[str, Any], VerifiedSnapshot | None]:
        """All of the run that talks to Kafka, in one event loop: the topics, the services until a stop
        condition (they are stopped on the way out), then the final policy.  Returns (summary, final policy)."""
        assert self.settings is not None
        if await topic_has_records(self.settings, self.topics.telemetry):
            # Its topics still hold another run's records: the progress and the final policy would be theirs.
            raise RunExistsError(
                f"run {self.config.run_id!r} already has records on {self.settings.bootstrap} "
                f"({self.topics.telemetry}): choose another --run-id"
            )
        await ensure_topics(self.settings, self.topics)
        if self.local is not None and self.local.security_protocol != "PLAINTEXT":
            await grant_run_acls(self.settings, self.config.run_id)
        for name, cmd in self.service_commands().items():
            self.services.spawn(name, cmd, self.service_env(name))
        self._write_pids()
        progress = await self._monitor(signals)  # stops the services before it returns
        summary = self._summary(progress, time.monotonic() - started)
        if self.returns is not None:
            write_returns(self.out_dir, self.returns)
        signals.release()  # every service has stopped: from here on a signal acts as it usually does
        return summary, await self._final_policy()

    async def _monitor(self, signals: StopSignals) -> RunProgress:
        assert self.settings is not None
        c = self.config
        tensorboard = self.out_dir / "tensorboard"  # the same scalars as metrics.jsonl (cli/tensorboard_sink.py)
        monitor = RunMonitor(self.settings, self.topics.telemetry, self.out_dir / "metrics.jsonl", tensorboard)
        await monitor.start()
        tracker = None
        if self.returns is not None:
            tracker = ReturnTracker(self.settings, self.topics.trajectories, self.returns)
            await tracker.start()
        budget = Budget(c.updates, c.frames, c.minutes * 60 if c.minutes else None)
        deadline = time.monotonic() + (budget.seconds or float("inf"))
        # Our own line beside the bar (cli/train_progress.py): tqdm's rate and ETA would be of the bar's unit.
        bar = tqdm(
            total=budget.total or None,
            bar_format="{percentage:3.0f}%|{bar}| {desc}",
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=1.0,
        )
        try:
            while True:
                await monitor.poll(timeout_ms=500)
                if tracker is not None:
                    await tracker.poll()
                p = monitor.progress
                elapsed = p.elapsed_s
                line = progress_text(
                    budget, updates=p.updates, frames=p.frames, elapsed_s=elapsed, recent_return=p.recent_return
                )
                bar.set_description_str(line, refresh=False)
                bar.update(budget.done(p.updates, p.frames, elapsed) - bar.n)  # redraws at most once per mininterval
                reason = self._reason_to_stop(p, deadline, signals)
                if reason is not None:
                    self.stop_reason = reason
                    break
        finally:
            bar.close()
            # Stop the services while still listening: each sends a last telemetry packet on the way
            # out (the actors' final frame counts, the learner's last update), which the summary needs.
            await asyncio.to_thread(self.services.stop_all)
            await monitor.drain()
            await monitor.stop()
            if tracker is not None:
                await tracker.poll(timeout_ms=300)
                await tracker.stop()
        return monitor.progress

    def _reason_to_stop(self, p: RunProgress, deadline: float, signals: StopSignals) -> str | None:
        c, returns = self.config, self.returns
        if signals.received is not None:
            return f"{signals.received} received"
        if returns is not None and c.stop_at_target and returns.reached:
            return (
                f"{c.return_window}-episode mean return reached {c.target_return:g} at {returns.reached_at} env frames"
            )
        if c.updates and p.updates >= c.updates:
            return f"reached {c.updates} learner updates"
        if c.frames and p.frames >= c.frames:
            return f"reached {c.frames} env frames"
        if time.monotonic() >= deadline:
            return f"reached {c.minutes} minutes"
        restarted = len(self.services.restarts)
        dead = self.services.supervise()
        if len(self.services.restarts) != restarted:
            self._write_pids()
        if dead is not None:
            again = f" (after {dead.restarts} restarts)" if dead.restarts else ""
            return f"service {dead.name} exited with code {dead.proc.returncode}{again}: {' | '.join(dead.log_tail())}"
        return None

    def _write_pids(self) -> None:
        # Replaced atomically: it is rewritten on every restart while others (tests, operators) read it.
        pids = json.dumps(self.services.pids() | {"broker": self._broker_pid()}).encode()
        write_atomically(self.out_dir / "pids.json", pids, 0o644)

    def _summary(self, progress: RunProgress, wall_s: float) -> dict[str, Any]:
        assert self.settings is not None
        summary: dict[str, Any] = {
            "bootstrap": self.settings.bootstrap,
            "security_protocol": self.settings.security_protocol,
            "broker_started": self.broker is not None,
            "stop_reason": self.stop_reason,
            "updates": progress.updates,
            "frames": progress.frames,
            "wall_s": wall_s,
            "frames_per_s": progress.frames / wall_s if wall_s > 0 else 0.0,
            "recent_return": progress.recent_return,
            "rejected_batches": int(progress.learner.get("rejected_batches", 0)),
            "deadlettered": int(progress.replay.get("deadlettered", 0)),
            "restarts": list(self.services.restarts),
        }
        if self.returns is not None:
            summary["returns"] = self.returns.summary()
        return summary

    async def _final_policy(self) -> VerifiedSnapshot | None:
        """The newest snapshot the run's learner published, verified as every reader of the policy topic does."""
        from tamiyo.contracts.env_schemas import env_schema
        from tamiyo.learner.core import LearnerConfig  # `tamiyo train` leaves the learner's --policy-id as it is
        from tamiyo.policy.verification import SnapshotVerifier

        assert self.settings is not None and self.keys is not None
        verifier = SnapshotVerifier(self.keys.trusted_keys(), LearnerConfig.policy_id, env_schema(self.config.env))
        return await newest_verified_snapshot(self.settings, self.topics.policy, verifier, "tamiyo-train-policy")
