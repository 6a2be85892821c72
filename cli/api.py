"""Tamiyo's Python API, for notebooks and scripts: `tamiyo train` and `tamiyo eval` as functions.

    import tamiyo

    result = tamiyo.train(tamiyo.TrainConfig.from_preset("host-sim", minutes=2))
    print(result.summary["frames_per_s"], result.verdict, result.policy_path)
    print(tamiyo.evaluate(result.policy_path, tasks=30)["mean_return"])

The commands are thin layers over these functions: `tamiyo train` builds a TrainConfig from its flags
(or ``--config FILE.toml``) and calls `train`; `tamiyo eval` calls `evaluate`.  Errors a caller can fix
(a bad setting, a run id that is taken, a broker that cannot start) raise `TrainError` / `UserError` with a
one-line message; the CLI prints that line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tamiyo.cli.extras import require_env_extras, require_extra
from tamiyo.cli.train_config import TrainConfig
from tamiyo.cli.user_errors import UserError

if TYPE_CHECKING:  # imported when called: `import tamiyo` must not start torch or a Kafka client
    from tamiyo.bus.clients import KafkaSettings

__all__ = ["BASELINE_CONTROLLERS", "RunResult", "TrainConfig", "TrainError", "evaluate", "train"]

BASELINE_CONTROLLERS = ("heuristic", "random", "none", "tuned")


class TrainError(UserError):
    """A run that could not start: its run id is taken on the cluster, or the local broker failed."""


@dataclass(frozen=True)
class RunResult:
    """What one `train` call did and wrote (the same as runs/<id>/ and the command's last JSON line)."""

    run_id: str
    out_dir: Path
    exit_code: int  # 0: finished, 1: a service died, 130: stopped by SIGINT/SIGTERM
    stop_reason: str
    summary: dict[str, Any] = field(default_factory=dict)  # frames, updates, frames/s, restarts, returns, ...
    evaluation: dict[str, Any] = field(default_factory=dict)  # the final evaluation (evaluation.json)
    policy_path: Path | None = None  # policy.safetensors, when the learner published one
    report_path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def verdict(self) -> str | None:
        """Host envs: the policy vs the heuristic, from the evaluation's confidence intervals."""
        return self.evaluation.get("verdict")

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    def metrics(self) -> list[dict[str, Any]]:
        """Every telemetry row of the run (metrics.jsonl), oldest first."""
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]


def train(config: TrainConfig | None = None, *, kafka: KafkaSettings | None = None, **settings: Any) -> RunResult:
    """Run the pipeline (broker, topics, learner, replay, actors) until ``config``'s budget, then evaluate.

    ``config``: the run's settings, taken as they are (`TrainConfig.from_preset` gives a preset's pipeline
    shape, as ``--preset`` does); keyword ``settings`` override its fields.  Without a ``config`` the
    settings are those of `tamiyo train` with the same flags: ``train(preset="cartpole", algo="ppo",
    env="gym:CartPole-v1", minutes=1)`` has the cartpole preset's shape.  ``kafka``: the cluster to use;
    None runs on the local broker under ``config.data_dir`` (started and stopped by the run if none is
    running).  Without any of ``updates``/``frames``/``minutes`` the run lasts the CLI's default of 3 minutes.
    """
    if config is not None:
        config = dataclasses.replace(config, **settings)
    elif settings.get("preset"):
        config = TrainConfig.from_preset(**settings)
    else:
        config = TrainConfig(**settings)
    check_config(config, kafka)
    require_extra("train", "tamiyo train (progress, plots, TensorBoard files)")
    require_env_extras(config.env, "tamiyo train")
    from tamiyo.bus.broker import BrokerError
    from tamiyo.cli.train_run import RunExistsError, TrainRun

    if not (config.updates or config.frames or config.minutes):
        config = dataclasses.replace(config, minutes=DEFAULT_MINUTES)
    run = TrainRun(config, kafka)
    try:
        code = run.run()
    except (BrokerError, RunExistsError) as err:
        raise TrainError(str(err)) from None
    return RunResult(
        run_id=config.run_id,
        out_dir=run.out_dir,
        exit_code=code,
        stop_reason=run.stop_reason,
        summary=run.summary,
        evaluation=run.evaluation,
        policy_path=run.policy_path,
        report_path=run.report_path,
    )


DEFAULT_MINUTES = 3.0  # with start-up and the final evaluation, a default run ends within 5 minutes on 2 cores


def check_env(env: str, host_only: bool = False) -> None:
    """Refuse an env name no service could make, and a ``host-sim:FILE`` whose calibration file is unusable."""
    from tamiyo.contracts.env_schemas import calibration_path, is_host_env

    if not is_host_env(env) and (host_only or not env.startswith("gym:")):
        known = (
            "host-sim, host-sim:FILE, host-train or host-train:paired"
            if host_only
            else "host-sim, host-sim:FILE, host-train, host-train:paired or gym:<id>"
        )
        raise UserError(f"env must be {known}, not {env!r}")
    path = calibration_path(env)
    if path is not None:
        from tamiyo.producers.calibration_file import CalibrationFileError, load_sim_params

        try:
            load_sim_params(path)
        except CalibrationFileError as err:
            raise UserError(f"env {env}: {err}") from None


def check_config(config: TrainConfig, kafka: KafkaSettings | None = None) -> None:
    """Refuse, with one line each, the settings that would only fail once the services are running."""
    from tamiyo.cli.common import PRESET_NAMES
    from tamiyo.cli.learner_cmd import check_learner_args

    if config.algo not in ("impala", "ppo"):
        raise UserError(f"algo must be impala or ppo, not {config.algo!r}")
    if config.replay_mode not in (None, "fifo", "prioritized"):
        raise UserError(f"replay_mode must be fifo or prioritized, not {config.replay_mode!r}")
    if config.preset is not None and config.preset not in PRESET_NAMES:
        raise UserError(f"preset must be one of {', '.join(PRESET_NAMES)}, not {config.preset!r}")
    check_env(config.env)
    for name in ("actors", "envs_per_actor", "unroll_length", "batch_size", "return_window"):
        if getattr(config, name) < 1:
            raise UserError(f"{name} must be at least 1, not {getattr(config, name)}")
    for name in ("updates", "frames", "minutes"):
        value = getattr(config, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{name} must be a positive finite number, not {value!r}")
    if not config.env.startswith("gym:") and config.eval_tasks < 1:
        raise UserError(f"eval_tasks must be at least 1 on a host env, not {config.eval_tasks}")
    for name in ("eval_episodes", "max_restarts", "torch_threads"):
        value = getattr(config, name)
        if value is not None and value < 0:
            raise UserError(f"{name} must not be negative, not {value}")
    if config.stop_at_target and config.target_return is None:
        raise UserError("stop_at_target needs target_return (--stop-at-target needs --target-return)")
    if config.init_from is not None and not Path(config.init_from).is_file():
        raise UserError(f"init_from: no policy file {config.init_from}")
    check_learner_args(config.learner_args, config.algo, config.init_from)
    if config.secure and kafka is not None:
        raise UserError(
            "secure runs on the local secure broker; for another cluster pass its security settings instead "
            "(--secure with --bootstrap: pass --security-protocol, --kafka-credentials, ...)"
        )


def evaluate(
    controller: str | Path = "heuristic",
    env: str = "host-sim",
    tasks: int = 20,
    seed: int = 0,
    split: str = "eval",
    sample: bool = False,
) -> dict[str, Any]:
    """One episode per held-out task for a baseline (heuristic, random, none, tuned) or a policy file.

    Returns `tamiyo eval`'s result: mean return with its 95% Student-t interval, mean final validation
    accuracy and parameters added, and ``per_task`` (task seed, return, ...) for paired comparisons
    (`tamiyo.producers.evaluate.paired_difference`).  The same arguments give the same tasks.
    """
    check_env(env, host_only=True)
    if tasks < 1:
        raise UserError(f"tasks must be at least 1, not {tasks}")
    require_env_extras(env, "evaluate")
    from tamiyo.producers.evaluate import evaluate as run_evaluation

    name = str(controller)
    if name in BASELINE_CONTROLLERS:
        return run_evaluation(name, env, tasks, seed, split=split)
    if not Path(name).is_file():
        raise UserError(f"{name!r} is neither a baseline ({', '.join(BASELINE_CONTROLLERS)}) nor a policy file")
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.producers.policy_controller import PolicyController

    policy = PolicyController.from_file(name, sample=sample)
    try:
        policy.require_schema(env_schema(env))
    except ValueError as err:
        raise UserError(f"{name}: {err}") from None
    return run_evaluation(policy, env, tasks, seed, split=split)
