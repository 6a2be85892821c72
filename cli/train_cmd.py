"""`tamiyo train`: actors + replay + learner over Kafka on this machine, with progress and a report."""

from __future__ import annotations

import argparse
import sys

# With start-up and the final evaluation, a default run ends within 5 minutes on a 2-core machine.
DEFAULT_MINUTES = 3.0


def register(sub: argparse._SubParsersAction) -> None:
    from tamiyo.bus.clients import add_kafka_arguments
    from tamiyo.cli.train_run import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="run the whole pipeline (local broker unless --bootstrap) and write a report")
    p.add_argument("--env", default=d.env, help="host-sim | host-train | gym:<id>")
    p.add_argument("--algo", choices=("impala", "ppo"), default=d.algo)
    p.add_argument("--actors", type=int, default=d.actors, help="actor processes")
    p.add_argument("--envs-per-actor", type=int, default=d.envs_per_actor)
    p.add_argument("--unroll-length", type=int, default=d.unroll_length)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="trajectories per learner batch")
    budget = p.add_argument_group(f"stop after (first reached; default {DEFAULT_MINUTES:g} minutes)")
    budget.add_argument("--updates", type=int, default=None)
    budget.add_argument("--frames", type=int, default=None)
    budget.add_argument("--minutes", type=float, default=None)
    p.add_argument("--out", default=d.out, help="runs/<id>/ is written here")
    p.add_argument("--run-id", default="", help="default: <time>-<algo>-<env>")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--entropy-coef", type=float, default=None)
    p.add_argument("--max-policy-lag", type=int, default=d.max_policy_lag, help="PPO: staleness limit (versions)")
    p.add_argument("--init-from", default=None, help="start from an earlier policy.safetensors (PPO -> IMPALA)")
    p.add_argument("--eval-tasks", type=int, default=d.eval_tasks)
    p.add_argument("--data-dir", default=d.data_dir, help="local broker data dir")
    p.add_argument("--keep-broker", action="store_true", help="leave a broker this run started running")
    add_kafka_arguments(p)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from tamiyo.bus.broker import BrokerError
    from tamiyo.bus.clients import settings_from_args
    from tamiyo.cli.common import setup_logging
    from tamiyo.cli.train_run import TrainConfig, TrainRun

    setup_logging()
    if not (args.updates or args.frames or args.minutes):
        args.minutes = DEFAULT_MINUTES
    config = TrainConfig(
        env=args.env,
        algo=args.algo,
        actors=args.actors,
        envs_per_actor=args.envs_per_actor,
        unroll_length=args.unroll_length,
        batch_size=args.batch_size,
        updates=args.updates,
        frames=args.frames,
        minutes=args.minutes,
        out=args.out,
        run_id=args.run_id,
        seed=args.seed,
        device=args.device,
        hidden=args.hidden,
        lr=args.lr,
        entropy_coef=args.entropy_coef,
        max_policy_lag=args.max_policy_lag,
        init_from=args.init_from,
        eval_tasks=args.eval_tasks,
        data_dir=args.data_dir,
        keep_broker=args.keep_broker,
    )
    settings = settings_from_args(args) if args.bootstrap else None
    try:
        return TrainRun(config, settings).run()
    except BrokerError as err:
        print(f"tamiyo train: error: {err}", file=sys.stderr)
        return 2
