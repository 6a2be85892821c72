"""The service processes of a `tamiyo train` run: their command lines, and starting and stopping them.

Each service is the same `tamiyo <service>` command a cluster would run, started in its own session
(Ctrl-C reaches only `tamiyo train`, which stops them in order) with its output in logs/<name>.log.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tamiyo.bus.processes import set_parent_death_signal, terminate
from tamiyo.cli.train_config import TrainConfig

log = logging.getLogger(__name__)
# Variables that say how to reach Kafka or carry a key: never inherited from `tamiyo train`'s own
# environment (its credentials file, a signing key, a password), only set per child (`spawn`).
PRIVATE_ENV_PREFIXES = ("TAMIYO_KAFKA_", "TAMIYO_POLICY_", "TAMIYO_DEV_KEYS_DIR")


def service_commands(config: TrainConfig, out_dir: Path, bootstrap: str) -> dict[str, list[str]]:
    """name -> argv of the learner, the replay and every actor of the run."""
    c = config

    def tamiyo(service: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "tamiyo.cli.main", service, "--run", c.run_id, "--bootstrap", bootstrap, *args]

    ppo = c.algo == "ppo"
    learner = ["--algo", c.algo, "--env", c.env, "--seed", str(c.seed), "--device", c.device,
               "--checkpoint-dir", str(out_dir / "checkpoint"),
               "--snapshot-every", "1", "--telemetry-every", "1"]  # fmt: skip
    if c.preset:
        learner += ["--preset", c.preset]
    if c.hidden is not None:
        learner += ["--hidden", str(c.hidden)]
    if c.frames:
        learner += ["--total-frames", str(c.frames)]
    if c.init_from:
        learner += ["--init-from", c.init_from]
    learner += c.learner_args
    mode = c.replay_mode or ("fifo" if ppo else "prioritized")
    replay = ["--mode", mode, "--batch-size", str(c.batch_size),
              "--max-policy-lag", str(c.max_policy_lag), "--telemetry-every", "2",
              "--seed", str(c.seed), "--env", c.env, *c.replay_args]  # fmt: skip
    commands = {"learner": tamiyo("learner", *learner), "replay": tamiyo("replay", *replay)}
    # Back-pressure on the replay's consumer group (its default name for the run): fifo only, where the
    # replay stops consuming while its queue is full, so the lag is what the learner has not caught up with.
    backlog = ["--backlog-group", f"tamiyo-replay-{c.run_id}", "--max-backlog", str(c.max_backlog)]
    for i in range(c.actors):
        commands[f"actor-{i}"] = tamiyo(
            "actor", "--env", c.env, "--num-envs", str(c.envs_per_actor), "--unroll-length", str(c.unroll_length),
            "--actor-id", f"actor-{i}", "--seed", str(c.seed * 100 + i), "--telemetry-every", "2",
            "--device", c.device, *(backlog if mode == "fifo" and c.max_backlog is not None else []),
        )  # fmt: skip
    return commands


def service_role(name: str) -> str:
    """The role (credentials, ACLs) service ``name`` of a run connects as: actor-3 -> actor."""
    return "actor" if name.startswith("actor-") else name


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)  # this service's own (keys, Kafka credentials)
    restarts: int = 0  # how many times this service was started again before this process
    exited_at: float | None = None  # when supervision first saw this process gone

    def log_tail(self, lines: int = 3) -> list[str]:
        return self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]


def stop_order(children: list[Child]) -> list[Child]:
    """Actors first (no new experience), then the replay, the learner last: it publishes its final snapshot."""
    return sorted(children, key=lambda c: (c.name == "learner", c.name == "replay"))


def restart_command(name: str, cmd: list[str]) -> list[str]:
    """The command that starts ``name`` again: the learner resumes from its checkpoint (and continues after
    the versions on the policy topic either way); the others start as before (an actor as a new incarnation)."""
    if name == "learner" and "--resume" not in cmd:
        return [*cmd, "--resume"]
    return cmd


class ServiceProcesses:
    """The children one run started; ``torch_threads`` caps OMP/MKL threads in each (None: their default).

    `supervise` restarts a child that exited, after a backoff that doubles with each restart, at most
    ``max_restarts`` times per service; a service that exits once more than that ends the run."""

    def __init__(
        self,
        logs_dir: Path,
        torch_threads: int | None = None,
        stop_grace_s: float = 20.0,
        max_restarts: int = 0,
        restart_backoff_s: float = 1.0,
    ) -> None:
        self.logs_dir = logs_dir
        self.torch_threads = torch_threads
        self.stop_grace_s = stop_grace_s
        self.max_restarts = max_restarts
        self.restart_backoff_s = restart_backoff_s
        self.children: list[Child] = []
        self.restarts: list[dict[str, str | int | float]] = []  # one entry per restart, for the report
        self._started = time.monotonic()

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Child:
        """Start ``name``; ``env``: variables for it alone (a service's keys and credentials)."""
        child = self._launch(name, cmd, env or {})
        self.children.append(child)
        return child

    def _launch(self, name: str, cmd: list[str], own_env: dict[str, str]) -> Child:
        log_path = self.logs_dir / f"{name}.log"
        # Keys and credentials reach a child only through its own ``env``: one the parent was given for
        # itself (a signing key, a password) is not inherited by every service.
        env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV_PREFIXES)} | own_env
        if self.torch_threads:
            n = str(self.torch_threads)
            env |= {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}
        with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches only us; we stop the services in order
                preexec_fn=set_parent_death_signal,
            )
        return Child(name, proc, log_path, list(cmd), dict(own_env))

    def supervise(self) -> Child | None:
        """Restart every child that has exited and whose backoff has passed; returns the first child that
        exited with no restart left (the run must end), else None."""
        for i, child in enumerate(self.children):
            code = child.proc.poll()
            if code is None:
                continue
            if child.restarts >= self.max_restarts:
                return child
            now = time.monotonic()
            if child.exited_at is None:
                child.exited_at = now
                log.warning("%s exited with code %s: %s", child.name, code, " | ".join(child.log_tail()))
            if now - child.exited_at < self.restart_backoff_s * 2**child.restarts:
                continue
            fresh = self._launch(child.name, restart_command(child.name, child.cmd), child.env)
            fresh.restarts = child.restarts + 1
            self.children[i] = fresh  # in its place: the start order is kept
            self.restarts.append({"service": child.name, "exit_code": code, "restart": fresh.restarts,
                                  "at_s": round(now - self._started, 1)})  # fmt: skip
            log.warning("%s restarted (%d of %d)", child.name, fresh.restarts, self.max_restarts)
        return None

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.children}

    def first_dead(self) -> Child | None:
        """The first child (in start order) that has exited, if any."""
        for child in self.children:
            if child.proc.poll() is not None:
                return child
        return None

    def stop_all(self) -> None:
        """SIGTERM every running child in `stop_order`, then wait for each (together at most ``stop_grace_s``);
        one still running then is killed.  Safe to call again."""
        order = stop_order(self.children)
        for child in order:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        for child in order:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                terminate(child.proc.pid, grace_s=0.1, sig=signal.SIGKILL)
                child.proc.wait(timeout=5)
