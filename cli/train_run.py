"""`tamiyo train`: the whole pipeline on one machine, then a report.

broker (local unless --bootstrap) → topics → learner + replay + N actor
processes (each one the same `tamiyo <service>` command a cluster would run)
→ progress from the telemetry topic → stop on --updates/--frames/--minutes,
Ctrl-C or SIGTERM → stop every process it started (actors first, the learner
last so it publishes its final snapshot) → final policy from the policy topic
→ evaluation against the heuristic → runs/<id>/{config.json, metrics.jsonl,
learning_curve.png, report.md, policy.safetensors}.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from tqdm import tqdm

from tamiyo.bus.admin import ensure_topics
from tamiyo.bus.broker import DEFAULT_DATA_DIR, LocalBroker, free_port, port_is_free
from tamiyo.bus.clients import KafkaSettings, make_consumer
from tamiyo.bus.processes import set_parent_death_signal, terminate
from tamiyo.cli.run_monitor import RunMonitor
from tamiyo.cli.run_report import plot_learning_curve, write_report
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import policy_key, verify_snapshot
from tamiyo.contracts.topics import Topics


@dataclass
class TrainConfig:
    env: str = "host-sim"
    algo: str = "impala"
    actors: int = 2
    envs_per_actor: int = 8
    unroll_length: int = 20
    batch_size: int = 16
    updates: int | None = None
    frames: int | None = None
    minutes: float | None = None
    out: str = "runs"
    run_id: str = ""
    seed: int = 0
    device: str = "cpu"
    hidden: int = 64
    lr: float | None = None
    entropy_coef: float | None = None
    init_from: str | None = None
    eval_tasks: int = 30
    data_dir: str = str(DEFAULT_DATA_DIR)
    keep_broker: bool = False
    max_policy_lag: int = 2
    extra_learner_args: list[str] = field(default_factory=list)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path


class TrainRun:
    def __init__(self, config: TrainConfig, settings_template: KafkaSettings | None) -> None:
        self.config = config
        if not config.run_id:
            config.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{config.algo}-{config.env.replace(':', '_')}"
        self.out_dir = Path(config.out) / config.run_id
        self.logs_dir = self.out_dir / "logs"
        self.settings_template = settings_template
        self.topics = Topics.for_run(config.run_id)
        self.children: list[Child] = []
        self.broker: LocalBroker | None = None
        self.stop_reason = "not started"

    # ------------------------------------------------------------ processes

    def _service_cmd(self, service: str, *args: str) -> list[str]:
        assert self.settings is not None
        return [sys.executable, "-m", "tamiyo.cli.main", service, "--run", self.config.run_id,
                "--bootstrap", self.settings.bootstrap, *args]  # fmt: skip

    def service_commands(self) -> dict[str, list[str]]:
        c = self.config
        ppo = c.algo == "ppo"
        learner = ["--algo", c.algo, "--env", c.env, "--seed", str(c.seed), "--device", c.device,
                   "--hidden", str(c.hidden), "--checkpoint-dir", str(self.out_dir / "checkpoint"),
                   "--snapshot-every", "1", "--telemetry-every", "1"]  # fmt: skip
        if c.frames:
            learner += ["--total-frames", str(c.frames)]
        if c.lr is not None:
            learner += ["--lr", str(c.lr)]
        if c.entropy_coef is not None:
            learner += ["--entropy-coef", str(c.entropy_coef)]
        if c.init_from:
            learner += ["--init-from", c.init_from]
        learner += c.extra_learner_args
        replay = ["--mode", "fifo" if ppo else "prioritized", "--batch-size", str(c.batch_size),
                  "--max-policy-lag", str(c.max_policy_lag), "--telemetry-every", "2",
                  "--seed", str(c.seed)]  # fmt: skip
        commands = {
            "learner": self._service_cmd("learner", *learner),
            "replay": self._service_cmd("replay", *replay),
        }
        for i in range(c.actors):
            commands[f"actor-{i}"] = self._service_cmd(
                "actor", "--env", c.env, "--num-envs", str(c.envs_per_actor), "--unroll-length", str(c.unroll_length),
                "--actor-id", f"actor-{i}", "--seed", str(c.seed * 100 + i), "--telemetry-every", "2",
                "--device", c.device,
            )  # fmt: skip
        return commands

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log_path = self.logs_dir / f"{name}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the services in order
            preexec_fn=set_parent_death_signal,
        )
        log.close()
        self.children.append(Child(name, proc, log_path))

    def _stop_children(self) -> None:
        # Actors first (no new experience), then replay, the learner last: it publishes its final snapshot.
        order = sorted(self.children, key=lambda c: (c.name == "learner", c.name == "replay"))
        for child in order:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in order:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                terminate(child.proc.pid, grace_s=0.1, sig=signal.SIGKILL)
                child.proc.wait(timeout=5)

    def _dead_child(self) -> Child | None:
        for child in self.children:
            if child.proc.poll() is not None:
                return child
        return None

    # ------------------------------------------------------------ the run

    def run(self) -> int:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        started = time.monotonic()
        stop = {"signal": None}

        def on_signal(signum, _frame) -> None:
            stop["signal"] = signal.Signals(signum).name

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        summary: dict[str, Any] = {}
        exit_code = 0
        try:
            self.settings = self._connect()
            asyncio.run(ensure_topics(self.settings, self.topics))
            for name, cmd in self.service_commands().items():
                self._spawn(name, cmd)
            (self.out_dir / "pids.json").write_text(
                json.dumps({c.name: c.proc.pid for c in self.children} | {"broker": self._broker_pid()})
            )
            progress = asyncio.run(self._monitor(stop))
            self._stop_children()
            summary = self._summary(progress, time.monotonic() - started)
            if stop["signal"] is None and self.stop_reason.startswith("service"):
                exit_code = 1
        finally:
            self._stop_children()
            for s, handler in previous.items():
                signal.signal(s, handler)
        policy_path = asyncio.run(self._fetch_final_policy())
        evaluation = self._evaluate(policy_path) if policy_path and stop["signal"] is None else {}
        if self.broker is not None and not self.config.keep_broker:
            self.broker.down()
        (self.out_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
        plot_learning_curve(self.out_dir / "metrics.jsonl", self.out_dir / "learning_curve.png",
                            f"{self.config.algo} on {self.config.env} ({self.config.run_id})")  # fmt: skip
        report = write_report(self.out_dir, asdict(self.config), summary, evaluation)
        print(f"report: {report}", flush=True)
        print(json.dumps({"run_id": self.config.run_id, "out": str(self.out_dir), **summary}), flush=True)
        return exit_code if stop["signal"] is None else 130

    def _connect(self) -> KafkaSettings:
        if self.settings_template is not None:
            self.broker_started = False
            return self.settings_template
        self.broker = LocalBroker(self.config.data_dir)
        running = self.broker.running_info()
        if running is not None:
            self.broker_started = False
            self.broker = None  # someone else's: leave it running
            return KafkaSettings(running.bootstrap)
        port = None if port_is_free(9092) else free_port()
        state = self.broker._load_state()
        if state and state.get("port") and port_is_free(int(state["port"])):
            port = int(state["port"])
        info = self.broker.up(port=port)
        self.broker_started = True
        print(f"local Kafka broker: {info.to_json()}", flush=True)
        return KafkaSettings(info.bootstrap)

    def _broker_pid(self) -> int:
        info = self.broker.running_info() if self.broker is not None else None
        return info.pid if info else 0

    async def _monitor(self, stop: dict) -> Any:
        c = self.config
        monitor = RunMonitor(self.settings, self.topics.telemetry, self.out_dir / "metrics.jsonl")
        await monitor.start()
        total = c.updates or c.frames or int((c.minutes or 5) * 60)
        unit = "updates" if c.updates else ("frames" if c.frames else "s")
        deadline = time.monotonic() + (c.minutes * 60 if c.minutes else float("inf"))
        bar = tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
        try:
            while True:
                await monitor.poll(timeout_ms=500)
                p = monitor.progress
                done = p.updates if c.updates else (p.frames if c.frames else int(p.elapsed_s))
                ret = p.recent_return
                bar.set_postfix_str(
                    f"updates={p.updates} frames={p.frames} fps={p.frames_per_s:.0f}"
                    + (f" return={ret:.3f}" if ret is not None else ""),
                    refresh=False,
                )
                bar.update(min(done, total) - bar.n)  # redraws at most once per mininterval
                if stop["signal"] is not None:
                    self.stop_reason = f"{stop['signal']} received"
                    break
                if c.updates and p.updates >= c.updates:
                    self.stop_reason = f"reached {c.updates} learner updates"
                    break
                if c.frames and p.frames >= c.frames:
                    self.stop_reason = f"reached {c.frames} env frames"
                    break
                if time.monotonic() >= deadline:
                    self.stop_reason = f"reached {c.minutes} minutes"
                    break
                dead = self._dead_child()
                if dead is not None:
                    tail = dead.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                    self.stop_reason = (
                        f"service {dead.name} exited with code {dead.proc.returncode}: {' | '.join(tail)}"
                    )
                    break
        finally:
            bar.close()
            # Let the learner's last packets land before the report reads the metrics.
            await monitor.poll(timeout_ms=300)
            await monitor.stop()
        return monitor.progress

    def _summary(self, progress: Any, wall_s: float) -> dict[str, Any]:
        return {
            "bootstrap": self.settings.bootstrap,
            "broker_started": getattr(self, "broker_started", False),
            "stop_reason": self.stop_reason,
            "updates": progress.updates,
            "frames": progress.frames,
            "wall_s": wall_s,
            "frames_per_s": progress.frames / wall_s if wall_s > 0 else 0.0,
            "recent_return": progress.recent_return,
            "rejected_batches": int(progress.learner.get("rejected_batches", 0)),
            "deadlettered": int(progress.replay.get("deadlettered", 0)),
        }

    async def _fetch_final_policy(self) -> Path | None:
        """The newest verified snapshot on the policy topic, written as policy.safetensors + policy.json."""
        consumer = make_consumer(self.settings, group_id=None)
        await consumer.start()
        newest: pb.PolicySnapshot | None = None
        try:
            tp = TopicPartition(self.topics.policy, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            deadline = time.monotonic() + 20
            while await consumer.position(tp) < end and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for rec in records:
                        try:
                            snap = decode_envelope(rec.value, expect=pb.PolicySnapshot).payload
                            verify_snapshot(snap, policy_key())
                        except LeylineError:
                            continue
                        if newest is None or snap.version >= newest.version:
                            newest = snap
        finally:
            await consumer.stop()
        if newest is None:
            return None
        path = self.out_dir / "policy.safetensors"
        path.write_bytes(newest.weights)
        path.with_suffix(".json").write_text(newest.config_json)
        return path

    def _evaluate(self, policy_path: Path) -> dict[str, Any]:
        c = self.config
        if c.env.startswith("gym:"):
            from tamiyo.producers.gym_eval import evaluate_gym_policy

            return evaluate_gym_policy(policy_path, c.env, episodes=20, seed=c.seed + 10_000)
        from tamiyo.producers.evaluate import evaluate
        from tamiyo.producers.policy_controller import PolicyController

        results = {
            "policy": evaluate(PolicyController.from_file(policy_path), c.env, c.eval_tasks, c.seed + 10_000),
            "heuristic": evaluate("heuristic", c.env, c.eval_tasks, c.seed + 10_000),
            "none": evaluate("none", c.env, c.eval_tasks, c.seed + 10_000),
        }
        for r in results.values():
            r.pop("per_task", None)
        p, h = results["policy"], results["heuristic"]
        if p["return_ci95"][0] > h["return_ci95"][1]:
            verdict = "the trained policy beats the heuristic (confidence intervals do not overlap)"
        elif p["mean_return"] > h["mean_return"]:
            verdict = "the trained policy's mean return is above the heuristic's, within the confidence intervals"
        else:
            verdict = "the trained policy does not beat the heuristic in this run"
        return {"tasks": c.eval_tasks, "seed": c.seed + 10_000, "controllers": results, "verdict": verdict}
