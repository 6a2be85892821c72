"""`tamiyo train` end to end: the run directory, and a clean stop on SIGTERM with nothing left running.

Without a broker: the learning proof's accounting, the choice of the final policy (and of promote's next
version) among policy-topic records, the services' stop order and the run's signal handling."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tamiyo.bus.admin import list_topics
from tamiyo.bus.processes import pid_alive
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.signing import PolicySigner
from tests.keys import OTHER_SIGNER, SIGNER, TRUSTED

from .helpers import produce, read

TRAIN = [sys.executable, "-m", "tamiyo.cli.main", "train"]


def _learner_updates(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return max((int(r["metrics"].get("updates", 0)) for r in rows if r["source"] == "learner"), default=0)


async def _inject_garbage_when_topics_exist(settings, topic: str, count: int) -> None:
    for _ in range(600):
        if topic in await list_topics(settings):
            break
        await asyncio.sleep(0.2)
    await produce(settings, topic, [b"\x00not-an-envelope-%d" % i for i in range(count)])


def _assert_tensorboard_holds_the_runs_scalars(run: Path, summary: dict) -> None:
    """runs/<id>/tensorboard: the scalars of metrics.jsonl, each at its env-frame step (cli/tensorboard_sink.py)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("learner/loss", "learner/entropy", "learner/policy_lag_mean", "learner/rho_mean",
                "learner/is_weight_mean", "actor/actor-0/episode_return_mean", "actor/actor-0/env_steps_per_s",
                "replay/replay-0/buffer_size", "replay/replay-0/deadlettered", "run/frames_per_s"):  # fmt: skip
        assert tag in tags, (tag, sorted(tags))
    run_frames = acc.Scalars("run/frames")  # every tag's step: the frames all actors had stepped by then
    assert all(e.value == e.step for e in run_frames) and run_frames[-1].step == summary["frames"]
    updates = acc.Scalars("learner/updates")
    steps = [e.step for e in updates]
    assert max(e.value for e in updates) >= 8 and steps == sorted(steps) and steps[-1] <= summary["frames"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["metrics"]["loss"] for r in rows if r["source"] == "learner" and "loss" in r["metrics"]]
    assert [e.value for e in acc.Scalars("learner/loss")] == pytest.approx(losses, rel=1e-6)


@pytest.mark.broker
async def test_train_runs_the_pipeline_deadletters_garbage_and_writes_the_run_directory(
    kafka_broker, kafka_settings, tmp_path
):
    out = tmp_path / "runs"
    proc = await asyncio.create_subprocess_exec(
        *TRAIN, "--bootstrap", kafka_broker.bootstrap, "--env", "host-sim", "--updates", "8", "--actors", "1",
        "--envs-per-actor", "4", "--batch-size", "8", "--eval-tasks", "4", "--out", str(out), "--run-id", "e2e",
        "--hidden", "16",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # Malformed records arrive on the trajectories topic in the middle of the run.
    await _inject_garbage_when_topics_exist(kafka_settings, "tamiyo.e2e.trajectories", 5)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=400)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    run = out / "e2e"
    for name in (
        "config.json",
        "metrics.jsonl",
        "learning_curve.png",
        "report.md",
        "policy.safetensors",
        "policy.json",
    ):
        assert (run / name).exists(), name
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["updates"] >= 8 and summary["frames"] > 0 and summary["broker_started"] is False
    _assert_tensorboard_holds_the_runs_scalars(run, summary)
    letters = await read(kafka_settings, "tamiyo.e2e.deadletter", 5)
    assert len(letters) == 5
    assert {decode_envelope(r.value).payload.reason for r in letters} == {"MalformedRecordError"}
    report = (run / "report.md").read_text()
    assert "| policy |" in report and "| heuristic |" in report
    # The run made its own keypair; the private key is the owner's alone.
    assert stat.S_IMODE((run / "keys" / "policy_signing.pem").stat().st_mode) == 0o600
    assert (run / "keys" / "policy_signing.pub.pem").exists()
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert set(evaluation["controllers"]) == {"policy", "heuristic", "none"}
    ev = subprocess.run(
        [sys.executable, "-m", "tamiyo.cli.main", "eval", "--controller", str(run / "policy.safetensors"),
         "--tasks", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr[-1000:]
    assert json.loads(ev.stdout)["controller"].startswith("policy:")
    # The same run id again would read this run's telemetry and policy as its own: refused, in one line.
    again = subprocess.run(
        [*TRAIN, "--bootstrap", kafka_broker.bootstrap, "--updates", "1", "--out", str(out), "--run-id", "e2e"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 2 and "choose another --run-id" in again.stderr.strip().splitlines()[-1]


@pytest.mark.broker
def test_sigterm_stops_everything_train_started_within_seconds(tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [*TRAIN, "--env", "gym:CartPole-v1", "--minutes", "10", "--actors", "1", "--envs-per-actor", "4",
         "--batch-size", "4", "--out", str(out), "--run-id", "sig", "--data-dir", str(tmp_path / "broker"),
         "--hidden", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run = out / "sig"
    try:
        deadline = time.monotonic() + 240
        while _learner_updates(run / "metrics.jsonl") < 2:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no learner progress"
            time.sleep(1)
        pids = json.loads((run / "pids.json").read_text())
        assert pids["broker"] > 0 and all(pid_alive(p) for p in pids.values())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert stopped_in < 45
    time.sleep(0.5)
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert (run / "report.md").exists() and (run / "policy.safetensors").exists()


# ---------------------------------------------------------------- without a broker


def _trajectory(actor: str, sequence: int, length: int, returns: list[float]):
    import numpy as np

    from tamiyo.contracts.proto import leyline_pb2 as pb

    return pb.Trajectory(
        actor_id=actor, sequence=sequence, length=length, episode_returns=np.asarray(returns, "<f4").tobytes()
    )


def test_episode_returns_credit_whole_collects_and_record_when_the_window_mean_reaches_the_target():
    from tamiyo.cli.train_returns import EpisodeReturns

    now = [100.0]
    r = EpisodeReturns(window=2, target=1.0, envs_per_actor=2, clock=lambda: now[0])
    r.add(_trajectory("a0", 0, 10, [0.5]))  # collect 0 of a0: 2 unrolls x 10 steps
    assert (r.frames, r.curve, r.reached) == (20, [], False)  # the window is not full yet
    r.add(_trajectory("a1", 1, 10, []))  # the second unroll of a1's collect 0
    assert r.frames == 40
    now[0] = 103.0
    r.add(_trajectory("a0", 2, 10, [1.5]))  # collect 1 of a0: 40 frames for a0
    assert r.frames == 60 and r.curve == [(60, 1.0)]
    assert r.reached and r.reached_at == 60 and r.reached_after_s == 3.0
    r.add(_trajectory("a0", 1, 10, [-1.0]))  # an earlier unroll arriving late never lowers a0's count
    assert r.frames == 60 and r.curve[-1] == (60, 0.25) and r.reached_at == 60
    assert r.summary() == {
        "window": 2,
        "target": 1.0,
        "reached_at_frames": 60,
        "reached_after_s": 3.0,
        "episodes": 3,
        "frames_published": 60,
        "best_window_mean": 1.0,
        "final_window_mean": 0.25,
    }


def test_the_run_report_ends_with_the_returns_section(tmp_path):
    from tamiyo.cli.run_report import write_report
    from tamiyo.cli.train_config import TrainConfig
    from tamiyo.cli.train_returns import EpisodeReturns

    r = EpisodeReturns(window=1, target=2.0, envs_per_actor=1)
    r.add(_trajectory("a0", 0, 5, [1.0]))
    summary = {"bootstrap": "x:1", "stop_reason": "done", "updates": 1, "frames": 5, "wall_s": 1.0,
               "frames_per_s": 5.0, "returns": r.summary()}  # fmt: skip
    config = TrainConfig(run_id="r").__dict__
    text = write_report(tmp_path, config, summary, {}).read_text()
    assert text.endswith(
        "![learning curve](learning_curve.png)\n\n"
        "## Episode returns (1-episode window, from the trajectories topic)\n\n"
        "- target 2: **not reached**\n"
        "- episodes: 1, frames published: 5\n"
        "- best window mean: 1.0, final window mean: 1.0\n"
    )
    without_proof = {k: v for k, v in summary.items() if k != "returns"}
    assert "## Episode returns" not in write_report(tmp_path, config, without_proof, {}).read_text()


def _policy_record(version: int, policy_id: str = "tamiyo", env: str = "host-sim", signer: PolicySigner | None = None,
                   seed: int | None = None) -> bytes:  # fmt: skip
    """A policy-topic record: a signed snapshot of a small network (weights from ``seed``, default ``version``)."""
    import torch

    from tamiyo.contracts.codec import encode_envelope
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.policy.model import ModelConfig, TamiyoGNN
    from tamiyo.policy.signing import signed_snapshot

    torch.manual_seed(version if seed is None else seed)
    model = TamiyoGNN(env_schema(env), ModelConfig(hidden=8, layers=("sage",)))
    snap = signed_snapshot(model, version=version, policy_id=policy_id, signer=signer or SIGNER)
    return encode_envelope(snap, source="test", producer_id="test", sequence=version)


def test_the_final_policy_is_the_newest_snapshot_the_verifier_accepts():
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.policy.newest import NewestVerified
    from tamiyo.policy.verification import SnapshotVerifier

    chooser = NewestVerified(SnapshotVerifier(TRUSTED, "tamiyo", env_schema("host-sim")))
    chooser.offer(b"\x00garbage")
    chooser.offer(None)  # a tombstone
    assert chooser.newest is None
    for record in (_policy_record(3), _policy_record(5), _policy_record(4)):
        chooser.offer(record)
    assert chooser.newest is not None and chooser.newest.version == 5
    chooser.offer(_policy_record(9, signer=OTHER_SIGNER))  # forged
    chooser.offer(_policy_record(8, policy_id="tamiyo-serving"))  # another policy id
    chooser.offer(_policy_record(7, env="gym:CartPole-v1"))  # trained for another graph schema
    assert chooser.newest.version == 5
    republished = _policy_record(5, seed=55)
    chooser.offer(republished)  # the same version again: the later record wins
    assert chooser.newest.message.sha256 == decode_envelope(republished).payload.sha256


def test_promote_numbers_after_the_newest_version_of_its_policy_id_signed_or_not():
    from tamiyo.policy.newest import NewestVersion

    chooser = NewestVersion("tamiyo-serving")
    assert chooser.version == -1
    for record in (
        _policy_record(2, policy_id="tamiyo-serving"),
        _policy_record(7, policy_id="tamiyo-serving", signer=OTHER_SIGNER),
        _policy_record(9, policy_id="tamiyo"),
        _policy_record(4, policy_id="tamiyo-serving"),
        b"\x00garbage",
        None,
    ):
        chooser.offer(record)
    assert chooser.version == 7
    # A forged, absurd version (anyone may write an unprotected topic) is ignored: the next one must fit a uint64.
    chooser.offer(_policy_record(2**64 - 1, policy_id="tamiyo-serving", signer=OTHER_SIGNER, seed=0))
    assert chooser.version == 7


def test_services_stop_actors_first_and_the_learner_last_and_a_stubborn_one_is_killed(tmp_path):
    from tamiyo.cli.train_services import Child, ServiceProcesses, stop_order

    names = ["learner", "actor-1", "replay", "actor-0"]
    order = stop_order([Child(n, None, tmp_path / n) for n in names])  # the order needs no processes
    assert [c.name for c in order] == ["actor-1", "actor-0", "replay", "learner"]

    services = ServiceProcesses(tmp_path, stop_grace_s=1.0)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
               "time.sleep(60)"  # fmt: skip
    services.spawn("actor-0", [sys.executable, "-c", stubborn])
    services.spawn("learner", [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"])
    services.spawn("replay", [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"])
    deadline = time.monotonic() + 30
    while not all("ready" in c.log_path.read_text() for c in services.children if c.name != "replay"):
        assert time.monotonic() < deadline, "children did not start"
        time.sleep(0.05)
    while services.first_dead() is None:
        assert time.monotonic() < deadline, "replay did not exit"
        time.sleep(0.05)
    dead = services.first_dead()
    assert dead is not None and dead.name == "replay" and dead.proc.returncode == 3
    assert dead.log_tail() == ["bad config"]
    assert set(services.pids()) == {"actor-0", "learner", "replay"}
    t0 = time.monotonic()
    services.stop_all()
    assert [c.name for c in services.children if pid_alive(c.proc.pid)] == []
    assert time.monotonic() - t0 >= 1.0  # actor-0 ignored SIGTERM: killed once the grace period was over
    services.stop_all()  # again: nothing left to do


def test_stop_signals_are_remembered_while_held_and_the_previous_handlers_come_back():
    from tamiyo.cli.train_run import StopSignals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as signals:
        assert signals.received is None
        signal.raise_signal(signal.SIGINT)  # not a KeyboardInterrupt while held
        assert signals.received == "SIGINT"
        signals.release()
        assert {s: signal.getsignal(s) for s in before} == before
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_service_that_exits_is_restarted_with_backoff_and_a_repeated_crash_ends_the_run(tmp_path):
    """Issue 12: `tamiyo train` supervises its children.  A child that exits is started again (the learner
    with --resume) after a doubling backoff, each restart recorded; the third exit with two restarts
    allowed is returned, which ends the run."""
    from tamiyo.cli.train_services import ServiceProcesses, restart_command

    assert restart_command("learner", ["tamiyo", "learner"]) == ["tamiyo", "learner", "--resume"]
    assert restart_command("learner", ["tamiyo", "learner", "--resume"]) == ["tamiyo", "learner", "--resume"]
    assert restart_command("actor-0", ["tamiyo", "actor"]) == ["tamiyo", "actor"]

    services = ServiceProcesses(tmp_path, stop_grace_s=1.0, max_restarts=2, restart_backoff_s=0.2)
    services.spawn("actor-0", [sys.executable, "-c", "import time; time.sleep(60)"])
    services.spawn("replay", [sys.executable, "-c", "print('crash'); raise SystemExit(3)"])
    deadline = time.monotonic() + 30
    try:
        while (dead := services.supervise()) is None:
            assert time.monotonic() < deadline, "the crashing child was not given up on"
            time.sleep(0.02)
        assert dead.name == "replay" and dead.restarts == 2 and dead.proc.returncode == 3
        assert [(r["service"], r["exit_code"], r["restart"]) for r in services.restarts] == [
            ("replay", 3, 1),
            ("replay", 3, 2),
        ]
        first, second = (r["at_s"] for r in services.restarts)
        assert second - first >= 0.35  # the second backoff is twice the first (0.2 s, then 0.4 s)
        assert [c.name for c in services.children] == ["actor-0", "replay"]  # start order kept
        assert services.children[0].proc.poll() is None  # the healthy child was left alone
        assert (tmp_path / "replay.log").read_text().count("crash") == 3  # one log, appended to
    finally:
        services.stop_all()


def test_run_progress_counts_a_restarted_actors_frames_on_top_of_its_earlier_ones():
    from tamiyo.cli.run_monitor import RunProgress

    p = RunProgress()
    p.learner_packet({"updates": 10.0})
    p.learner_packet({"rejected_batches": 0.0})  # a packet without the counter changes nothing
    p.learner_packet({"updates": 6.0})  # restarted from a checkpoint at 6: 4 updates were done before it
    assert p.updates == 10
    p.learner_packet({"updates": 9.0})
    assert p.updates == 13
    p.actor_packet("actor/actor-0", {"env_steps": 500.0})
    p.actor_packet("actor/actor-1", {"env_steps": 300.0})
    p.actor_packet("actor/actor-0", {"env_steps": 800.0})
    assert p.frames == 1100
    p.actor_packet("actor/actor-0", {"env_steps": 40.0})  # restarted: counts from 0 again
    assert p.frames == 800 + 40 + 300
    p.actor_packet("actor/actor-0", {"env_steps": 100.0})
    assert p.frames == 800 + 100 + 300


def test_each_service_gets_the_cluster_settings_and_only_the_learner_gets_the_private_key(tmp_path, monkeypatch):
    """Credentials and keys reach the children through their own environment, never a command line; what
    `tamiyo train` itself was given (a signing key, a password) is not inherited by every child."""
    from tamiyo.bus.clients import KafkaSettings
    from tamiyo.cli.run_keys import run_keys
    from tamiyo.cli.train_config import TrainConfig
    from tamiyo.cli.train_run import TrainRun
    from tamiyo.cli.train_services import ServiceProcesses

    secure = KafkaSettings("127.0.0.1:1", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                           sasl_username="tamiyo-admin", sasl_password="s3cret", ssl_cafile="/ca.pem")  # fmt: skip
    run = TrainRun(TrainConfig(out=str(tmp_path), run_id="envs", actors=2), secure)
    run.keys = run_keys(None, None, tmp_path / "envs" / "keys")
    learner, actor = run.service_env("learner"), run.service_env("actor-1")
    assert learner["TAMIYO_POLICY_SIGNING_KEY"] == str(run.keys.signing_key)
    assert "TAMIYO_POLICY_SIGNING_KEY" not in actor
    assert actor["TAMIYO_POLICY_TRUSTED_KEYS"].endswith("policy_signing.pub.pem")
    for env in (learner, actor):
        assert env["TAMIYO_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["TAMIYO_KAFKA_SASL_PASSWORD"] == "s3cret"
        assert env["TAMIYO_KAFKA_SSL_CAFILE"] == "/ca.pem"
    assert not any(
        "s3cret" in arg or "policy_signing.pem" in arg for cmd in run.service_commands().values() for arg in cmd
    )

    # A child sees its own variables, not the parent's private ones.
    monkeypatch.setenv("TAMIYO_POLICY_SIGNING_KEY", "/parent/own.pem")
    monkeypatch.setenv("TAMIYO_KAFKA_SASL_PASSWORD", "parent-password")
    monkeypatch.setenv("TAMIYO_KAFKA_CREDENTIALS", "/parent/admin.json")
    monkeypatch.setenv("TAMIYO_DEV_KEYS_DIR", "/parent/dev-keys")
    services = ServiceProcesses(tmp_path)
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    child = services.spawn("actor-0", [sys.executable, "-c", dump], {"TAMIYO_POLICY_TRUSTED_KEYS": "/pub.pem"})
    child.proc.wait(timeout=30)
    seen = json.loads(child.log_path.read_text().strip().splitlines()[-1])
    assert seen["TAMIYO_POLICY_TRUSTED_KEYS"] == "/pub.pem"
    assert not [k for k in seen if k.startswith(("TAMIYO_KAFKA_", "TAMIYO_DEV_")) or k == "TAMIYO_POLICY_SIGNING_KEY"]
    assert "parent" not in repr(child) and "/pub.pem" not in repr(child)  # a child's env stays out of logs


def test_pids_json_is_never_seen_half_written(tmp_path):
    """It is rewritten on every restart while tests and operators read it (a CI run once read it empty)."""
    import threading

    from tamiyo.cli.train_config import TrainConfig
    from tamiyo.cli.train_run import TrainRun

    run = TrainRun(TrainConfig(out=str(tmp_path), run_id="pids"), None)
    run.out_dir.mkdir(parents=True)
    run.services.pids = lambda: {f"actor-{i}": 10_000 + i for i in range(200)}  # type: ignore[method-assign]
    run._write_pids()
    bad: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            text = (run.out_dir / "pids.json").read_text()
            try:
                json.loads(text)
            except ValueError:
                bad.append(text)

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(2000):
        run._write_pids()
    done.set()
    t.join()
    assert bad == []
