"""`tamiyo replay`: the replay consumer service (trajectories in, sampled batches out)."""

from __future__ import annotations

import argparse
import json

from tamiyo.bus.clients import add_kafka_arguments, settings_from_args
from tamiyo.cli.common import add_run_arguments, run_until_signalled, setup_logging, topics_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from tamiyo.replay_store.replay_config import MODES, ReplayConfig  # light: no numpy, no Kafka

    d = ReplayConfig()
    p = sub.add_parser("replay", help="replay consumer: trajectories -> prioritized/FIFO buffer -> batches")
    p.add_argument("--mode", choices=MODES, default=d.mode, help="prioritized (IMPALA) or fifo (PPO)")
    p.add_argument("--capacity", type=int, default=d.capacity)
    p.add_argument("--max-bytes", type=int, default=d.max_bytes)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="trajectories per sampled batch")
    p.add_argument("--alpha", type=float, default=d.alpha)
    p.add_argument("--beta-start", type=float, default=d.beta_start)
    p.add_argument("--beta-steps", type=int, default=d.beta_steps)
    p.add_argument("--min-size", type=int, default=None)
    p.add_argument("--samples-per-insert", type=float, default=None)
    p.add_argument("--max-in-flight", type=int, default=d.max_in_flight)
    p.add_argument(
        "--max-policy-lag", type=int, default=d.max_policy_lag, help="fifo: drop items this many versions old"
    )
    p.add_argument(
        "--max-staleness",
        type=int,
        default=d.max_staleness,
        help="prioritized: never sample items more than this many policy versions old again (negative: no cap)",
    )
    p.add_argument("--snapshot-path", default=None, help="on-disk snapshot (restored on start)")
    p.add_argument("--snapshot-every", type=float, default=d.snapshot_every_s)
    p.add_argument("--telemetry-every", type=float, default=d.telemetry_every_s)
    p.add_argument("--replay-id", default=d.replay_id)
    p.add_argument("--group-id", default=None)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env", default=None, help="check every trajectory against this env's graph schema (e.g. host-sim)")
    add_run_arguments(p)
    add_kafka_arguments(p, bootstrap_required=True)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from tamiyo.consumers.replay_service import ReplayService
    from tamiyo.replay_store.replay_config import ReplayConfig

    setup_logging(args.verbose)
    config = ReplayConfig(
        mode=args.mode,
        capacity=args.capacity,
        max_bytes=args.max_bytes,
        batch_size=args.batch_size,
        alpha=args.alpha,
        beta_start=args.beta_start,
        beta_steps=args.beta_steps,
        min_size=args.min_size,
        samples_per_insert=args.samples_per_insert,
        max_in_flight=args.max_in_flight,
        max_policy_lag=args.max_policy_lag,
        max_staleness=args.max_staleness if args.max_staleness is not None and args.max_staleness >= 0 else None,
        snapshot_path=args.snapshot_path,
        snapshot_every_s=args.snapshot_every,
        telemetry_every_s=args.telemetry_every,
        replay_id=args.replay_id,
        run_id=args.run,
        group_id=args.group_id,
        max_seconds=args.max_seconds,
        seed=args.seed,
        env=args.env,
    )
    service = ReplayService(config, settings_from_args(args), topics_from_args(args))
    stats = run_until_signalled(coro_factory=service.run)
    print(json.dumps(stats.__dict__))
    return 0
