"""Actor settings (kept apart from the service so the CLI can show defaults without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

OVERFLOW_POLICIES = ("block", "drop-oldest")


@dataclass
class ActorConfig:
    env: str = "host-sim"
    num_envs: int = 4
    unroll_length: int = 20
    actor_id: str = "actor-0"
    controller: str = "policy"  # "policy" (learned, from the policy topic) or a baseline name
    seed: int = 0
    policy_id: str = "tamiyo"
    run_id: str = ""
    max_unrolls: int | None = None
    max_seconds: float | None = None
    queue_size: int = 256
    overflow: str = "block"
    max_in_flight: int = 64
    telemetry_every_s: float = 5.0
    wait_for_policy_s: float = 300.0
    device: str = "cpu"
    # Back-pressure (bus/backlog.py): before each collect, wait while more than ``max_backlog`` unrolls
    # on `trajectories` wait for consumer group ``backlog_group`` (the fifo replay).  None: never wait.
    backlog_group: str | None = None
    max_backlog: int | None = None
