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
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
    hidden: int | None = None  # None: the preset's, else the learner's default (64)
    init_from: str | None = None
    eval_tasks: int = 30  # host envs: held-out tasks for the final evaluation
    eval_episodes: int = 20  # gym envs: greedy episodes for the final evaluation (0: none)
    data_dir: str = str(DEFAULT_DATA_DIR)
    keep_broker: bool = False
    max_policy_lag: int = 2
    replay_mode: str | None = None  # fifo | prioritized; None: fifo for PPO, prioritized for IMPALA
    preset: str | None = None  # learner/presets.py: learner hyperparameters (+ the pipeline shape, via the CLI)
    learner_args: list[str] = field(default_factory=list)  # explicit learner flags (override the preset)
    replay_args: list[str] = field(default_factory=list)  # extra `tamiyo replay` flags
    extra_learner_args: list[str] = field(default_factory=list)
    # Learning proof: the mean return of the last `return_window` finished episodes, read from the
    # trajectories topic; `stop_at_target` ends the run as soon as it reaches `target_return`.
    target_return: float | None = None
    return_window: int = 20
    stop_at_target: bool = False
    torch_threads: int | None = None  # OMP/torch threads per service process (None: torch's default)


class ReturnTracker:
    """The learning proof's measurement: a windowed mean of episode returns, read from `trajectories`.

    Every finished episode travels in the `Trajectory` of the unroll it ended in
    (``episode_returns``).  Episodes are taken in the order the records reach the
    topic; the env-step count credited to an episode is, summed over all actors,
    the frames of every collect each actor has published up to and including the
    collect that episode ended in (a collect = ``envs_per_actor`` unrolls), so it
    never undercounts what the actors had stepped when the episode ended.  Frames
    the replay later drops as stale are counted too: they were stepped.
    """

    def __init__(self, settings: KafkaSettings, topic: str, window: int, target: float | None,
                 envs_per_actor: int) -> None:  # fmt: skip
        self.settings = settings.with_client_id("tamiyo-train-returns")
        self.topic = topic
        self.window = window
        self.target = target
        self.envs_per_actor = max(1, envs_per_actor)
        self.returns: list[float] = []
        self.curve: list[tuple[int, float]] = []  # (frames, windowed mean) at every episode once the window is full
        self.actor_frames: dict[str, int] = {}
        self.reached_at: int | None = None
        self.reached_after_s: float | None = None
        self.best: float | None = None
        self.started = time.monotonic()
        self._consumer = None

    @property
    def frames(self) -> int:
        return sum(self.actor_frames.values())

    @property
    def reached(self) -> bool:
        return self.reached_at is not None

    async def start(self) -> None:
        self._consumer = make_consumer(self.settings, group_id=None)
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)  # `tamiyo train` creates one partition per topic
        self._consumer.assign([tp])
        await self._consumer.seek_to_beginning(tp)

    async def poll(self, timeout_ms: int = 0) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=2000)
        records = sorted((r for rs in batch.values() for r in rs), key=lambda r: r.timestamp)
        for rec in records:
            try:
                traj = decode_envelope(rec.value, expect=pb.Trajectory, validate=False).payload
            except LeylineError:
                continue  # the replay dead-letters it; it holds no episode we could trust
            self._apply(traj)

    def _apply(self, traj: pb.Trajectory) -> None:
        n = self.envs_per_actor
        collect_end = (int(traj.sequence) // n + 1) * n * int(traj.length)
        self.actor_frames[traj.actor_id] = max(self.actor_frames.get(traj.actor_id, 0), collect_end)
        for ret in np.frombuffer(traj.episode_returns, dtype="<f4").tolist():
            self.returns.append(float(ret))
            if len(self.returns) < self.window:
                continue
            mean = float(np.mean(self.returns[-self.window :]))
            frames = self.frames
            self.curve.append((frames, mean))
            self.best = mean if self.best is None else max(self.best, mean)
            if self.reached_at is None and self.target is not None and mean >= self.target:
                self.reached_at = frames
                self.reached_after_s = time.monotonic() - self.started

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def summary(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "target": self.target,
            "reached_at_frames": self.reached_at,
            "reached_after_s": None if self.reached_after_s is None else round(self.reached_after_s, 1),
            "episodes": len(self.returns),
            "frames_published": self.frames,
            "best_window_mean": self.best,
            "final_window_mean": self.curve[-1][1] if self.curve else None,
        }


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
                   "--checkpoint-dir", str(self.out_dir / "checkpoint"),
                   "--snapshot-every", "1", "--telemetry-every", "1"]  # fmt: skip
        if c.preset:
            learner += ["--preset", c.preset]
        if c.hidden is not None:
            learner += ["--hidden", str(c.hidden)]
        if c.frames:
            learner += ["--total-frames", str(c.frames)]
        if c.init_from:
            learner += ["--init-from", c.init_from]
        learner += c.learner_args + c.extra_learner_args
        mode = c.replay_mode or ("fifo" if ppo else "prioritized")
        replay = ["--mode", mode, "--batch-size", str(c.batch_size),
                  "--max-policy-lag", str(c.max_policy_lag), "--telemetry-every", "2",
                  "--seed", str(c.seed), *c.replay_args]  # fmt: skip
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
        env = None
        if self.config.torch_threads:
            n = str(self.config.torch_threads)
            env = os.environ | {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}
        proc = subprocess.Popen(
            cmd,
            env=env,
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
            progress = asyncio.run(self._monitor(stop))  # stops the services before it returns
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
        if "returns" in summary:
            _append_returns_section(report, summary["returns"])
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
        tracker = None
        if c.target_return is not None:
            tracker = ReturnTracker(self.settings, self.topics.trajectories, c.return_window, c.target_return,
                                    c.envs_per_actor)  # fmt: skip
            await tracker.start()
        self.tracker = tracker
        total = c.updates or c.frames or int((c.minutes or 5) * 60)
        unit = "updates" if c.updates else ("frames" if c.frames else "s")
        deadline = time.monotonic() + (c.minutes * 60 if c.minutes else float("inf"))
        bar = tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
        try:
            while True:
                await monitor.poll(timeout_ms=500)
                if tracker is not None:
                    await tracker.poll()
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
                if tracker is not None and c.stop_at_target and tracker.reached:
                    self.stop_reason = (
                        f"{c.return_window}-episode mean return reached {c.target_return:g} "
                        f"at {tracker.reached_at} env frames"
                    )
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
            # Stop the services while still listening: each sends a last telemetry packet on the way
            # out (the actors' final frame counts, the learner's last update), which the summary needs.
            await asyncio.to_thread(self._stop_children)
            await monitor.drain()
            await monitor.stop()
            if tracker is not None:
                await tracker.poll(timeout_ms=300)
                await tracker.stop()
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
        } | self._returns_summary()

    def _returns_summary(self) -> dict[str, Any]:
        tracker = getattr(self, "tracker", None)
        if tracker is None:
            return {}
        (self.out_dir / "returns.json").write_text(
            json.dumps(tracker.summary() | {"curve": [[f, round(m, 3)] for f, m in tracker.curve]})
        )
        return {"returns": tracker.summary()}

    async def _fetch_final_policy(self) -> Path | None:
        """The newest verified snapshot on the policy topic, written as policy.safetensors + policy.json.

        The learner publishes in version order on one partition, so the newest is among the last
        records: read those first (a long run leaves thousands of not-yet-compacted snapshots) and
        scan the whole topic only if none of them verifies.
        """
        consumer = make_consumer(self.settings, group_id=None)
        await consumer.start()
        newest: pb.PolicySnapshot | None = None
        try:
            tp = TopicPartition(self.topics.policy, 0)
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            for start in (max(begin, end - 16), begin):
                consumer.seek(tp, start)
                deadline = time.monotonic() + 60
                while await consumer.position(tp) < end and time.monotonic() < deadline:
                    for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                        for rec in records:
                            if rec.offset >= end:
                                continue
                            try:
                                snap = decode_envelope(rec.value, expect=pb.PolicySnapshot).payload
                                verify_snapshot(snap, policy_key())
                            except LeylineError:
                                continue
                            if newest is None or snap.version >= newest.version:
                                newest = snap
                if newest is not None or start == begin:
                    break
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
        if c.torch_threads:
            import torch

            torch.set_num_threads(c.torch_threads)
        if c.env.startswith("gym:"):
            from tamiyo.producers.gym_eval import evaluate_gym_policy

            if c.eval_episodes < 1:
                return {}
            return evaluate_gym_policy(policy_path, c.env, episodes=c.eval_episodes, seed=c.seed + 10_000)
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


def _append_returns_section(report: Path, r: dict[str, Any]) -> None:
    reached = (
        f"first reached at **{r['reached_at_frames']:,} env frames** ({r['reached_after_s']} s into the run)"
        if r["reached_at_frames"] is not None
        else "**not reached**"
    )
    lines = [
        "",
        f"## Episode returns ({r['window']}-episode window, from the trajectories topic)",
        "",
        f"- target {r['target']:g}: {reached}",
        f"- episodes: {r['episodes']}, frames published: {r['frames_published']:,}",
        f"- best window mean: {r['best_window_mean']}, final window mean: {r['final_window_mean']}",
        "",
    ]
    with report.open("a") as f:
        f.write("\n".join(lines))
