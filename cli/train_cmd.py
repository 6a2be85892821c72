"""`tamiyo train`: actors + replay + learner over Kafka on this machine, with progress and a report.

``--preset NAME`` (learner/presets.py) sets the learner's hyperparameters and,
for the chosen ``--algo``, the pipeline shape (actors, envs per actor, unroll
length, batch size, replay settings); any flag given explicitly overrides it.
``--config FILE.toml`` (cli/train_config_file.py; every run writes one as
runs/<id>/config.toml) gives the settings a flag would; flags override it.
A thin layer over the Python API's `tamiyo.train` (cli/api.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from tamiyo.cli.api import DEFAULT_MINUTES
from tamiyo.cli.common import PRESET_NAMES
from tamiyo.cli.train_config import TrainConfig, preset_shape
from tamiyo.cli.train_config_file import ConfigFileError, read_config_file

# TrainConfig fields whose flag stores under another name.
FIELD_DESTS = {"replay_args": "replay_arg", "learner_args": "config_learner_args"}


def register(sub: argparse._SubParsersAction) -> None:
    from tamiyo.bus.clients import add_kafka_arguments
    from tamiyo.cli.learner_cmd import add_hyperparameter_arguments

    d = TrainConfig()
    p = sub.add_parser("train", help="run the whole pipeline (local broker unless --bootstrap) and write a report")
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE.toml",
        help="settings from a TOML file (keys: TrainConfig's fields, e.g. runs/<id>/config.toml); flags override it",
    )
    p.add_argument("--env", default=d.env, help="host-sim | host-sim:FILE | host-train | host-train:paired | gym:<id>")
    p.add_argument("--algo", choices=("impala", "ppo"), default=d.algo)
    shape = p.add_argument_group("pipeline shape (explicit flag > --preset > default)")
    shape.add_argument("--actors", type=int, default=None, help=f"actor processes (default {d.actors})")
    shape.add_argument("--envs-per-actor", type=int, default=None, help=f"default {d.envs_per_actor}")
    shape.add_argument("--unroll-length", type=int, default=None, help=f"default {d.unroll_length}")
    shape.add_argument(
        "--batch-size", type=int, default=None, help=f"trajectories per learner batch (default {d.batch_size})"
    )
    shape.add_argument(
        "--replay-mode",
        choices=("fifo", "prioritized"),
        default=None,
        help="replay store (default: fifo for PPO, prioritized for IMPALA)",
    )
    lag_help = f"fifo replay: staleness limit in policy versions (default {d.max_policy_lag})"
    shape.add_argument("--max-policy-lag", type=int, default=None, help=lag_help)
    backlog_help = "fifo replay: actors wait while more unrolls than this wait for the replay in Kafka"
    shape.add_argument("--max-backlog", type=int, default=None, help=backlog_help)
    replay_help = "extra `tamiyo replay` argument, repeatable (e.g. --replay-arg=--max-in-flight --replay-arg=1)"
    shape.add_argument("--replay-arg", action="append", default=None, metavar="ARG", help=replay_help)
    budget = p.add_argument_group(f"stop after (first reached; default {DEFAULT_MINUTES:g} minutes)")
    budget.add_argument("--updates", type=int, default=None)
    budget.add_argument("--frames", type=int, default=None)
    budget.add_argument("--minutes", type=float, default=None)
    proof = p.add_argument_group("learning proof (episode returns read from the trajectories topic)")
    proof.add_argument("--target-return", type=float, default=None, help="track the windowed mean return vs this")
    proof.add_argument("--return-window", type=int, default=d.return_window, help="episodes in the window")
    # BooleanOptionalAction (--no-...): a flag can turn off what a --config file turned on.
    stop_help = "stop as soon as the target is reached"
    proof.add_argument("--stop-at-target", action=argparse.BooleanOptionalAction, default=False, help=stop_help)
    p.add_argument("--out", default=d.out, help="runs/<id>/ is written here")
    p.add_argument("--run-id", default="", help="default: <time>-<algo>-<env>")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument(
        "--torch-threads", type=int, default=1, help="OMP/torch threads per service process (0: torch's default)"
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=d.max_restarts,
        help="restarts per service before a crash ends the run (the learner restarts with --resume)",
    )
    p.add_argument("--init-from", default=None, help="start from an earlier policy.safetensors (PPO -> IMPALA)")
    p.add_argument("--eval-tasks", type=int, default=d.eval_tasks, help="host envs: held-out tasks to evaluate on")
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help="gym envs: greedy episodes (0: none)")
    p.add_argument("--data-dir", default=d.data_dir, help="local broker data dir")
    keep_help = "leave a broker this run started running"
    p.add_argument("--keep-broker", action=argparse.BooleanOptionalAction, default=False, help=keep_help)
    p.add_argument(
        "--secure",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="on the local secure broker (TLS, SCRAM per service role, ACLs; data dir .tamiyo/secure-broker)",
    )
    add_hyperparameter_arguments(p, list(PRESET_NAMES))
    add_kafka_arguments(p)
    keys = p.add_argument_group("policy keys (default: a fresh keypair in runs/<id>/keys/)")
    keys.add_argument(
        "--signing-key", default=None, help="the learner's Ed25519 private key (env TAMIYO_POLICY_SIGNING_KEY)"
    )
    keys.add_argument(
        "--trusted-keys",
        default=None,
        help="more public keys the actors trust, comma-separated (env TAMIYO_POLICY_TRUSTED_KEYS)",
    )
    p.set_defaults(handler=_handle, file_defaults=config_file_defaults, config_learner_args=[])


def config_file_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``--config``'s settings as parser defaults (a dest per field), each checked against the flag's choices."""
    if not args.config:
        return {}
    values = read_config_file(args.config)
    choices = {a.dest: a.choices for a in parser._actions if a.choices is not None}
    defaults: dict[str, Any] = {}
    for name, value in values.items():
        dest = FIELD_DESTS.get(name, name)
        allowed = choices.get(dest)
        if allowed is not None and value not in allowed:
            raise ConfigFileError(f"{args.config}: {name} = {value!r} is not one of {', '.join(map(str, allowed))}")
        defaults[dest] = value
    return defaults


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig: explicit flags, then the preset's pipeline shape for --algo, then the defaults."""
    from tamiyo.cli.learner_cmd import check_learner_flags, hyperparameter_argv

    check_learner_flags(args)
    d = TrainConfig()
    shape = preset_shape(args.preset, args.algo) if args.preset else {}

    def pick(name: str) -> Any:
        explicit = getattr(args, name)
        return explicit if explicit is not None else shape.get(name, getattr(d, name))

    replay_args = args.replay_arg if args.replay_arg is not None else shape.get("replay_args", d.replay_args)
    # --hidden has its own TrainConfig field (it is in the run's config); the other flags are passed as given,
    # after a config file's learner_args (the learner's parser lets the later flag win).
    flags = hyperparameter_argv(args)
    if args.hidden is not None:
        i = flags.index("--hidden")
        del flags[i : i + 2]
    learner_args = [*args.config_learner_args, *flags]
    return TrainConfig(
        env=args.env,
        algo=args.algo,
        actors=pick("actors"),
        envs_per_actor=pick("envs_per_actor"),
        unroll_length=pick("unroll_length"),
        batch_size=pick("batch_size"),
        max_policy_lag=pick("max_policy_lag"),
        max_backlog=pick("max_backlog"),
        replay_mode=pick("replay_mode"),
        updates=args.updates,
        frames=args.frames,
        minutes=args.minutes,
        out=args.out,
        run_id=args.run_id,
        seed=args.seed,
        device=args.device,
        hidden=args.hidden,
        init_from=args.init_from,
        eval_tasks=args.eval_tasks,
        eval_episodes=args.eval_episodes,
        data_dir=args.data_dir,
        keep_broker=args.keep_broker,
        secure=args.secure,
        preset=args.preset,
        learner_args=learner_args,
        replay_args=replay_args,
        target_return=args.target_return,
        return_window=args.return_window,
        stop_at_target=args.stop_at_target,
        torch_threads=args.torch_threads,
        max_restarts=args.max_restarts,
        signing_key=args.signing_key,
        trusted_keys=args.trusted_keys,
    )


def _handle(args: argparse.Namespace) -> int:
    from tamiyo.bus.clients import settings_from_args
    from tamiyo.cli.api import train
    from tamiyo.cli.common import setup_logging

    setup_logging()
    settings = settings_from_args(args) if args.bootstrap else None
    return train(config_from_args(args), kafka=settings).exit_code
