"""Tamiyo PPO against Stable-Baselines3 PPO on CartPole-v1, same machine, same run; prints one JSON object + a PNG.

    python bench/peers.py                       # 2 seeds: SB3, Tamiyo in-process, Tamiyo through Kafka
    python bench/peers.py --seeds 3 --no-kafka  # in-process only
    python bench/peers.py --seeds 1 --budget-frames 2000 --no-kafka   # smoke run (tests/test_bench_peers.py)

Needs ``pip install -e '.[bench]'`` (stable-baselines3).  Every run uses one torch thread on the CPU.

- ``sb3``: Stable-Baselines3 PPO with the rl-baselines3-zoo CartPole-v1 hyperparameters (``SB3_ZOO`` below, from
  the zoo's hyperparams/ppo.yml): 8 envs x 32 steps, one minibatch of 256, 20 epochs, gamma .98, lambda .8, no
  entropy bonus, learning rate and clip range linear from 1e-3 and 0.2 to 0 over the zoo's 1e5 timesteps (the
  schedules stay over 1e5 when ``--budget-frames`` stops a run earlier).  Episode returns come from the
  ``Monitor`` wrapper (``infos[i]["episode"]``) through a callback.
- ``tamiyo``: `tamiyo.learner.inprocess.train_ppo` with the ``cartpole`` preset (``CARTPOLE_PPO``, the same zoo
  tuning on a TamiyoGNN over one-node graphs, plus a KL stop at 0.02 and a constant clip range; its learning rate
  decays over the preset's 200k steps, or over ``--budget-frames`` when that is smaller).
- ``tamiyo_kafka`` (``--kafka``; default on when java and mvn are on PATH): ``tamiyo train --preset cartpole
  --algo ppo`` as a subprocess against a local broker this script starts in a temporary directory (and stops),
  reading ``runs/<id>/returns.json`` and the run's telemetry (``metrics.jsonl``).

For each run: env frames, wall seconds, frames/s (start-up excluded: model and env construction for the in-process
runs, the broker, topic creation and process start for Kafka, where it is the actors' env-step rate between their
first and last telemetry packets), and the env frames at which the mean of the last 20 finished episodes first
reached 450 (null if never).  ``frames_learned_per_s`` counts only the frames that went into a PPO update (256 per
update): in-process that is every frame, but through Kafka the actor keeps stepping while the learner works and
the fifo replay drops unrolls older than the preset's policy-lag limit, so there it is lower than frames/s.  The
in-process runs also split their time into acting (env steps + policy forward passes) and learning (PPO updates),
and count optimizer steps.  A run stops at 450 unless ``--full``.  The machine is shared: rates are comparable
within one run of this script, not across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ENV = "gym:CartPole-v1"
GYM_ID = "CartPole-v1"
THRESHOLD = 450.0
WINDOW = 20
TAMIYO = [sys.executable, "-m", "tamiyo.cli.main"]

# DLR-RM/rl-baselines3-zoo, hyperparams/ppo.yml, "CartPole-v1" (marked "# Tuned" there).
SB3_ZOO: dict[str, Any] = {
    "n_envs": 8,
    "n_timesteps": 100_000,
    "policy": "MlpPolicy",
    "n_steps": 32,
    "batch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "n_epochs": 20,
    "ent_coef": 0.0,
    "learning_rate": "lin_0.001",
    "clip_range": "lin_0.2",
}
SB3_SOURCE = "rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1 (github.com/DLR-RM/rl-baselines3-zoo)"
BATCH_FRAMES = 8 * 32  # env frames per PPO update, in all three (8 envs x 32 steps)
KAFKA_FRAMES = 200_000  # the cartpole preset's PPO budget (learning proof: >= 450 within 200k frames)


@dataclass
class Run:
    impl: str
    seed: int
    frames: int = 0
    wall_s: float = 0.0
    frames_per_s: float = 0.0
    reached_at: int | None = None  # env frames when the 20-episode mean first reached the threshold
    final_mean_return: float | None = None
    episodes: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)  # (frames, windowed mean) per finished episode
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, points: int) -> dict[str, Any]:
        stride = max(1, len(self.curve) // max(1, points))
        return {
            "impl": self.impl,
            "seed": self.seed,
            "frames": self.frames,
            "wall_s": round(self.wall_s, 2),
            "frames_per_s": round(self.frames_per_s, 1),
            "reached_at": self.reached_at,
            "final_mean_return": None if self.final_mean_return is None else round(self.final_mean_return, 1),
            "episodes": self.episodes,
            **self.extra,
            "curve": [[f, round(m, 1)] for f, m in self.curve[::stride]],
        }


def windowed(
    returns: Sequence[tuple[int, float]], window: int, threshold: float
) -> tuple[list[tuple[int, float]], int | None]:
    """(frames, mean of the last ``window`` returns) at every episode, and the first frames with a full window
    whose mean reached ``threshold`` (the rule of `tamiyo.learner.inprocess`)."""
    curve: list[tuple[int, float]] = []
    reached: int | None = None
    values = [r for _, r in returns]
    for k, (frames, _) in enumerate(returns):
        recent = values[max(0, k + 1 - window) : k + 1]
        mean = float(np.mean(recent))
        curve.append((frames, mean))
        if reached is None and len(recent) == window and mean >= threshold:
            reached = frames
    return curve, reached


# ------------------------------------------------------------------------------------------ Stable-Baselines3


def linear(initial: float) -> Callable[[float], float]:
    """The zoo's ``lin_<x>``: ``x`` times SB3's progress remaining (1 at the start, 0 at n_timesteps)."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


def run_sb3(seed: int, budget: int, stop_at_threshold: bool) -> Run:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Recorder(BaseCallback):
        """Every finished episode's return with the timestep count; time spent collecting; stops the run."""

        def __init__(self) -> None:
            super().__init__()
            self.returns: list[tuple[int, float]] = []
            self.values: list[float] = []
            self.reached = False
            self.rollout_s = 0.0
            self._rollout_t: float | None = None

        def _on_rollout_start(self) -> None:
            self._rollout_t = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self._close_rollout()

        def _on_training_end(self) -> None:
            self._close_rollout()  # a run stopped by _on_step ends inside a rollout

        def _close_rollout(self) -> None:
            if self._rollout_t is not None:
                self.rollout_s += time.perf_counter() - self._rollout_t
                self._rollout_t = None

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                ep = info.get("episode")
                if ep is None:
                    continue
                self.returns.append((self.num_timesteps, float(ep["r"])))
                self.values.append(float(ep["r"]))
                recent = self.values[-WINDOW:]
                if len(recent) == WINDOW and float(np.mean(recent)) >= THRESHOLD:
                    self.reached = True
            if stop_at_threshold and self.reached:
                return False
            return self.num_timesteps < budget

    torch.set_num_threads(1)
    hp = SB3_ZOO
    env = make_vec_env(GYM_ID, n_envs=hp["n_envs"], seed=seed)
    model = PPO(
        hp["policy"],
        env,
        n_steps=hp["n_steps"],
        batch_size=hp["batch_size"],
        gae_lambda=hp["gae_lambda"],
        gamma=hp["gamma"],
        n_epochs=hp["n_epochs"],
        ent_coef=hp["ent_coef"],
        learning_rate=linear(0.001),
        clip_range=linear(0.2),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    recorder = Recorder()
    start = time.perf_counter()
    model.learn(total_timesteps=hp["n_timesteps"], callback=recorder)  # the schedules run over the zoo's 1e5
    wall = time.perf_counter() - start
    env.close()
    curve, reached = windowed(recorder.returns, WINDOW, THRESHOLD)
    frames = int(model.num_timesteps)
    updates = int(model._n_updates) // hp["n_epochs"]
    minibatches = -(-hp["n_envs"] * hp["n_steps"] // hp["batch_size"])
    return Run(
        "sb3",
        seed,
        frames=frames,
        wall_s=wall,
        frames_per_s=frames / wall if wall > 0 else 0.0,
        reached_at=reached,
        final_mean_return=curve[-1][1] if curve else None,
        episodes=len(curve),
        curve=curve,
        extra={
            "act_s": round(recorder.rollout_s, 2),
            "learn_s": round(wall - recorder.rollout_s, 2),
            "updates": updates,
            "frames_learned": updates * BATCH_FRAMES,
            "frames_learned_per_s": round(updates * BATCH_FRAMES / wall, 1) if wall > 0 else None,
            "optimizer_steps": int(model._n_updates) * minibatches,
        },
    )


# ------------------------------------------------------------------------------------------ Tamiyo in-process


@dataclass
class _Timing:
    collect_s: float = 0.0
    update_s: float = 0.0
    optimizer_steps: int = 0
    early_stops: int = 0


class TimedSource:
    """An `ExperienceSource` that times ``collect`` (env steps + the behaviour policy's forward passes)."""

    def __init__(self, inner: Any, timing: _Timing) -> None:
        self.inner = inner
        self.timing = timing

    @property
    def env_steps(self) -> int:
        return int(self.inner.env_steps)

    @property
    def episodes(self) -> Sequence[Any]:
        return self.inner.episodes

    def collect(self) -> list[Any]:
        t = time.perf_counter()
        try:
            return self.inner.collect()
        finally:
            self.timing.collect_s += time.perf_counter() - t


@contextmanager
def timed_updates(timing: _Timing) -> Iterator[None]:
    """While held, `train_ppo` builds a `PPOLearner` whose ``update`` is timed and its optimizer steps counted."""
    from tamiyo.learner import inprocess
    from tamiyo.learner.ppo import PPOLearner

    class TimedLearner(PPOLearner):
        def update(self, unrolls: Sequence[Any]) -> dict[str, float]:
            t = time.perf_counter()
            metrics = super().update(unrolls)
            timing.update_s += time.perf_counter() - t
            timing.optimizer_steps += int(metrics.get("optimizer_steps", 0))
            timing.early_stops += int(metrics.get("early_stopped", 0))
            return metrics

    original = inprocess.PPOLearner
    inprocess.PPOLearner = TimedLearner  # type: ignore[misc]
    try:
        yield
    finally:
        inprocess.PPOLearner = original  # type: ignore[misc]


def run_tamiyo(seed: int, budget: int, stop_at_threshold: bool) -> Run:
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.learner.inprocess import train_ppo
    from tamiyo.learner.presets import CARTPOLE_MODEL, CARTPOLE_PPO
    from tamiyo.producers.experience import env_collectors

    torch.set_num_threads(1)
    config = CARTPOLE_PPO if budget >= CARTPOLE_PPO.total_env_steps else replace(CARTPOLE_PPO, total_env_steps=budget)
    timing = _Timing()
    collectors = env_collectors(ENV, seed)

    def make(policy: Any, num_envs: int, unroll_length: int) -> TimedSource:
        return TimedSource(collectors(policy, num_envs, unroll_length), timing)

    with timed_updates(timing):
        curve = train_ppo(
            env_schema(ENV),
            make,
            config,
            seed,
            CARTPOLE_MODEL,
            threshold=THRESHOLD,
            window=WINDOW,
            stop_at_threshold=stop_at_threshold,
            device="cpu",
            env_id=ENV,
        )
    wall = curve.wall_s
    return Run(
        "tamiyo",
        seed,
        frames=curve.env_steps,
        wall_s=wall,
        frames_per_s=curve.env_steps / wall if wall > 0 else 0.0,
        reached_at=curve.reached_at,
        final_mean_return=curve.points[-1][1] if curve.points else None,
        episodes=len(curve.points),
        curve=list(curve.points),
        extra={
            "act_s": round(timing.collect_s, 2),
            "learn_s": round(timing.update_s, 2),
            "updates": curve.updates,
            "frames_learned": curve.updates * BATCH_FRAMES,
            "frames_learned_per_s": round(curve.updates * BATCH_FRAMES / wall, 1) if wall > 0 else None,
            "optimizer_steps": timing.optimizer_steps,
            "kl_early_stops": timing.early_stops,
        },
    )


# ------------------------------------------------------------------------------------------ Tamiyo over Kafka


def read_telemetry(metrics_path: Path) -> dict[str, list[tuple[int, dict[str, float]]]]:
    """The run's telemetry packets (metrics.jsonl), by source, as (timestamp_ns, metrics) in time order."""
    by_source: dict[str, list[tuple[int, dict[str, float]]]] = {}
    if not metrics_path.exists():
        return by_source
    for line in metrics_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        by_source.setdefault(str(rec.get("source", "")), []).append((int(rec["timestamp_ns"]), rec.get("metrics", {})))
    for packets in by_source.values():
        packets.sort(key=lambda p: p[0])
    return by_source


def telemetry_rate(telemetry: dict[str, list[tuple[int, dict[str, float]]]], prefix: str, metric: str) -> float | None:
    """Growth per second of ``metric`` between the first and last packets of each source starting with ``prefix``,
    summed over those sources (None without two packets to tell)."""
    rate, found = 0.0, False
    for source, packets in telemetry.items():
        points = [(t, m[metric]) for t, m in packets if metric in m]
        if not source.startswith(prefix) or len(points) < 2:
            continue
        (t0, v0), (t1, v1) = points[0], points[-1]
        if t1 <= t0:
            continue
        rate, found = rate + (v1 - v0) / ((t1 - t0) / 1e9), True
    return rate if found else None


def stop_process(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM (`tamiyo train` then stops its services in order), SIGKILL after ``grace_s``.  The services die
    with it in any case (their parent-death signal)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_kafka(seed: int, budget: int, stop_at_threshold: bool, bootstrap: str, out: Path, timeout_s: float) -> Run:
    run_id = f"peers-s{seed}-{uuid.uuid4().hex[:8]}"
    frames_budget = min(KAFKA_FRAMES, budget)
    cmd = [*TAMIYO, "train", "--preset", "cartpole", "--algo", "ppo", "--env", ENV, "--frames", str(frames_budget)]
    cmd += ["--target-return", str(THRESHOLD), "--return-window", str(WINDOW), "--eval-episodes", "0"]
    cmd += ["--seed", str(seed), "--torch-threads", "1", "--run-id", run_id, "--out", str(out)]
    cmd += ["--bootstrap", bootstrap]
    if stop_at_threshold:
        cmd.append("--stop-at-target")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_process(proc)
        stdout, stderr = proc.communicate()
    finally:
        stop_process(proc)
    total_wall = time.monotonic() - start
    summary: dict[str, Any] = {}
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                summary = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    run_dir = out / run_id
    returns: dict[str, Any] = {}
    if (run_dir / "returns.json").exists():
        returns = json.loads((run_dir / "returns.json").read_text())
    telemetry = read_telemetry(run_dir / "metrics.jsonl")
    steady = telemetry_rate(telemetry, "actor/", "env_steps")  # the actors' env-step rate, start-up excluded
    learned = telemetry_rate(telemetry, "learner", "updates")
    replay = next((packets[-1][1] for src, packets in telemetry.items() if src.startswith("replay/")), {})
    frames = int(summary.get("frames", returns.get("frames_published", 0)))
    curve = [(int(f), float(m)) for f, m in returns.get("curve", [])]
    extra: dict[str, Any] = {
        "run_id": run_id,
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "stop_reason": summary.get("stop_reason"),
        "updates": summary.get("updates"),
        "frames_learned": int(summary.get("updates", 0)) * BATCH_FRAMES,
        "frames_learned_per_s": None if learned is None else round(learned * BATCH_FRAMES, 1),
        "replay_unrolls_delivered": replay.get("store_delivered_total"),
        "replay_unrolls_dropped_stale": replay.get("store_dropped_stale_total"),
        "train_wall_s": round(float(summary.get("wall_s", 0.0)), 2),  # `tamiyo train`'s own: from topic creation
        "frames_per_s_incl_startup": round(float(summary.get("frames_per_s", 0.0)), 1),
        "process_wall_s": round(total_wall, 2),  # with the Python start-up and the final policy fetch
        "reached_after_s": returns.get("reached_after_s"),
    }
    if proc.returncode != 0 or not summary:
        extra["stderr_tail"] = stderr[-1500:]
    return Run(
        "tamiyo_kafka",
        seed,
        frames=frames,
        wall_s=float(summary.get("wall_s", total_wall)),
        frames_per_s=steady if steady is not None else float(summary.get("frames_per_s", 0.0)),
        reached_at=returns.get("reached_at_frames"),
        final_mean_return=returns.get("final_window_mean"),
        episodes=int(returns.get("episodes", 0)),
        curve=curve,
        extra=extra,
    )


# ------------------------------------------------------------------------------------------ report


def save_png(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"sb3": "tab:blue", "tamiyo": "tab:orange", "tamiyo_kafka": "tab:green"}
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in runs:
        if r.curve:
            frames, means = zip(*r.curve, strict=True)
            ax.plot(
                frames,
                means,
                color=colors.get(r.impl),
                ls=styles[(r.seed - 1) % len(styles)],
                lw=1.2,
                label=f"{r.impl} seed {r.seed}",
            )
    ax.axhline(THRESHOLD, color="k", ls="--", lw=0.8, label=f"threshold {THRESHOLD:g}")
    ax.set_xlabel("env frames")
    ax.set_ylabel(f"mean return (last {WINDOW} episodes)")
    ax.set_title("PPO on CartPole-v1: Stable-Baselines3 (zoo) vs Tamiyo")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def aggregate(runs: list[Run]) -> dict[str, Any]:
    reached = [r.reached_at for r in runs]
    hits = [x for x in reached if x is not None]
    frames = sum(r.frames for r in runs)
    seconds = sum(r.frames / r.frames_per_s for r in runs if r.frames_per_s > 0)
    return {
        "frames_per_s": round(frames / seconds, 1) if seconds > 0 else None,  # pooled over the seeds
        "frames_learned_per_s": _mean([r.extra.get("frames_learned_per_s") for r in runs]),
        "frames_to_threshold": reached,
        "median_frames_to_threshold": float(np.median(hits)) if hits else None,
        "reached": f"{len(hits)}/{len(runs)}",
    }


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 1) if known else None


def kafka_available() -> bool:
    return shutil.which("java") is not None and shutil.which("mvn") is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2, help="seeds 1..N for every implementation")
    ap.add_argument(
        "--budget-frames",
        type=int,
        default=None,
        help="cap on env frames per run (SB3 never runs past the zoo's 1e5, Tamiyo past its preset's 200k)",
    )
    ap.add_argument(
        "--kafka",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run `tamiyo train` through a local broker (default: when java and mvn are found)",
    )
    ap.add_argument("--kafka-timeout-s", type=float, default=150.0, help="per Kafka run")
    ap.add_argument("--full", action="store_true", help="train the whole budget instead of stopping at 450")
    ap.add_argument("--png", type=Path, default=Path("runs/bench/peers.png"), help="the JSON is saved next to it")
    ap.add_argument("--points", type=int, default=100, help="curve points per run in the JSON")
    args = ap.parse_args()
    use_kafka = kafka_available() if args.kafka is None else args.kafka
    budget = args.budget_frames or 10**12
    stop = not args.full
    seeds = list(range(1, args.seeds + 1))

    start = time.perf_counter()
    runs: list[Run] = []
    for seed in seeds:
        runs.append(run_sb3(seed, budget, stop))
        runs.append(run_tamiyo(seed, budget, stop))
    if use_kafka:
        from tamiyo.bus.broker import LocalBroker, free_port

        tmp = Path(tempfile.mkdtemp(prefix="tamiyo-peers-"))
        broker = LocalBroker(tmp / "broker")
        try:
            bootstrap = broker.up(port=free_port(), timeout_s=120, die_with_parent=True).bootstrap
            for seed in seeds:
                runs.append(run_kafka(seed, budget, stop, bootstrap, tmp / "runs", args.kafka_timeout_s))
        finally:
            broker.down(grace_s=20)
            shutil.rmtree(tmp, ignore_errors=True)

    from tamiyo.learner.presets import CARTPOLE_MODEL, CARTPOLE_PPO

    by_impl = {impl: [r for r in runs if r.impl == impl] for impl in ("sb3", "tamiyo", "tamiyo_kafka")}
    summary = {impl: aggregate(rs) for impl, rs in by_impl.items() if rs}
    sb3_fps, tamiyo_fps = summary["sb3"]["frames_per_s"], summary["tamiyo"]["frames_per_s"]
    ratio = round(tamiyo_fps / sb3_fps, 3) if sb3_fps and tamiyo_fps else None
    kafka_ratio = None
    if "tamiyo_kafka" in summary and summary["tamiyo_kafka"]["frames_per_s"] and sb3_fps:
        kafka_ratio = round(summary["tamiyo_kafka"]["frames_per_s"] / sb3_fps, 3)
    png = args.png
    save_png(runs, png)
    import stable_baselines3

    result = {
        "env_id": ENV,
        "threshold": THRESHOLD,
        "window": WINDOW,
        "seeds": seeds,
        "budget_frames": args.budget_frames,
        "stop_at_threshold": stop,
        "kafka": use_kafka,
        "tamiyo_over_sb3_frames_per_s": ratio,
        "tamiyo_kafka_over_sb3_frames_per_s": kafka_ratio,
        "summary": summary,
        "hyperparameters": {
            "sb3": {"source": SB3_SOURCE, "version": stable_baselines3.__version__, **SB3_ZOO},
            "tamiyo": {
                "source": "tamiyo.learner.presets.CARTPOLE_PPO",
                "ppo": asdict(CARTPOLE_PPO),
                "model": asdict(CARTPOLE_MODEL),
            },
        },
        "torch_threads": 1,
        "device": "cpu",
        "cpus": os.cpu_count(),
        "total_wall_s": round(time.perf_counter() - start, 1),
        "png": str(png),
        "runs": [r.to_dict(args.points) for r in runs],
    }
    text = json.dumps(result)
    png.with_suffix(".json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
