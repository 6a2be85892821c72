"""The settings of one `tamiyo train` run (written to runs/<id>/config.json).

Kept free of heavy imports: `tamiyo train`'s parser reads the defaults here at every CLI start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from tamiyo.bus.broker import DEFAULT_DATA_DIR


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
    secure: bool = False  # the local broker with TLS, SCRAM per service role and ACLs (bus/broker_security.py)
    max_policy_lag: int = 2
    max_backlog: int | None = None  # fifo: actor back-pressure on the replay's lag (bus/backlog.py); None: off
    replay_mode: str | None = None  # fifo | prioritized; None: fifo for PPO, prioritized for IMPALA
    preset: str | None = None  # learner/presets.py: learner hyperparameters (+ the pipeline shape, via the CLI)
    learner_args: list[str] = field(default_factory=list)  # explicit learner flags (override the preset)
    replay_args: list[str] = field(default_factory=list)  # extra `tamiyo replay` flags
    # Learning proof: the mean return of the last `return_window` finished episodes, read from the
    # trajectories topic; `stop_at_target` ends the run as soon as it reaches `target_return`.
    target_return: float | None = None
    return_window: int = 20
    stop_at_target: bool = False
    max_restarts: int = 3  # per service: a child that exits is started again (backoff 1, 2, 4 s), then the run ends
    # Policy keys (cli/run_keys.py): the learner's private key and extra public keys the readers trust;
    # None: a fresh keypair in runs/<id>/keys/.  Paths only: config.json never holds a secret.
    signing_key: str | None = None
    trusted_keys: str | None = None
    torch_threads: int | None = None  # OMP/torch threads per service process (None: torch's default)

    @classmethod
    def from_preset(cls, preset: str, algo: str = "impala", **settings: Any) -> TrainConfig:
        """A run with ``preset``'s pipeline shape for ``algo`` (actors, envs per actor, unroll length, batch,
        replay settings) and its learner hyperparameters, as `tamiyo train --preset` does; ``settings``
        override any field.  (A plain ``TrainConfig(preset=...)`` takes the preset's learner
        hyperparameters only, with this class's shape.)"""
        return cls(**(preset_shape(preset, algo) | {"preset": preset, "algo": algo} | settings))


SHAPE_FIELDS = ("actors", "envs_per_actor", "unroll_length", "batch_size", "max_policy_lag", "max_backlog",
                "replay_mode", "replay_args")  # fmt: skip


def preset_shape(preset: str, algo: str) -> dict[str, Any]:
    """The TrainConfig fields that ``preset`` sets for ``algo`` (none if it has no pipeline for it)."""
    from tamiyo.learner.presets import get_preset  # torch: only when a preset is asked for

    shape = get_preset(preset).pipeline.get(algo)
    if shape is None:
        return {}
    values = {name: getattr(shape, name) for name in SHAPE_FIELDS}
    values["replay_args"] = list(shape.replay_args)
    assert set(values) <= {f.name for f in fields(TrainConfig)}
    return values
