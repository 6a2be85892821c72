"""`tamiyo actor`: run environments with the latest policy and publish trajectories."""

from __future__ import annotations

import argparse
import json

from tamiyo.bus.clients import add_kafka_arguments, settings_from_args
from tamiyo.cli.common import add_run_arguments, run_until_signalled, setup_logging, topics_from_args
from tamiyo.cli.keys import add_trust_arguments, trusted_from_args
from tamiyo.cli.tensorboard_sink import tensorboard_sink
from tamiyo.contracts.env_schemas import PAIRED_HOST_TRAIN
from tamiyo.producers.actor_config import OVERFLOW_POLICIES, ActorConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("actor", help="step environments with the behaviour policy; publish trajectories")
    d = ActorConfig()
    p.add_argument("--env", default=d.env, help="host-sim | host-train[:paired] | gym:<id> (e.g. gym:CartPole-v1)")
    p.add_argument("--num-envs", type=int, default=d.num_envs)
    p.add_argument("--unroll-length", type=int, default=d.unroll_length)
    p.add_argument("--actor-id", default=d.actor_id)
    p.add_argument("--controller", default=d.controller, help="policy | heuristic | random | none | tuned")
    p.add_argument("--policy-id", default=d.policy_id)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-unrolls", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--queue-size", type=int, default=d.queue_size, help="unrolls buffered while Kafka is away")
    p.add_argument("--overflow", choices=OVERFLOW_POLICIES, default=d.overflow)
    p.add_argument("--telemetry-every", type=float, default=d.telemetry_every_s)
    p.add_argument("--wait-for-policy", type=float, default=d.wait_for_policy_s)
    p.add_argument("--device", default=d.device)
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="also write this actor's telemetry to DIR as TensorBoard scalars",
    )
    p.add_argument(
        "--backlog-group",
        default=None,
        help="consumer group whose lag on trajectories applies back-pressure (the fifo replay's)",
    )
    p.add_argument(
        "--max-backlog",
        type=int,
        default=None,
        help="before each collect, wait while more unrolls than this wait for --backlog-group",
    )
    add_run_arguments(p)
    add_kafka_arguments(p, bootstrap_required=True)
    add_trust_arguments(p)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from tamiyo.cli.extras import require_env_extras
    from tamiyo.cli.user_errors import UserError

    setup_logging(args.verbose)
    require_env_extras(args.env, "tamiyo actor")
    if (args.backlog_group is None) != (args.max_backlog is None):
        raise UserError("--backlog-group and --max-backlog go together")
    if args.env == PAIRED_HOST_TRAIN and args.controller != "policy":
        raise UserError("host-train:paired trains the learned controller (--controller policy); baselines: host-train")
    trusted = trusted_from_args(args) if args.controller == "policy" else None  # baselines verify nothing
    config = ActorConfig(
        env=args.env,
        num_envs=args.num_envs,
        unroll_length=args.unroll_length,
        actor_id=args.actor_id,
        controller=args.controller,
        seed=args.seed,
        policy_id=args.policy_id,
        run_id=args.run,
        max_unrolls=args.max_unrolls,
        max_seconds=args.max_seconds,
        queue_size=args.queue_size,
        overflow=args.overflow,
        telemetry_every_s=args.telemetry_every,
        wait_for_policy_s=args.wait_for_policy,
        device=args.device,
        backlog_group=args.backlog_group,
        max_backlog=args.max_backlog,
    )
    from tamiyo.producers.actor import Actor

    with tensorboard_sink(args.tensorboard) as sink:  # closed on the way out: the event file is complete
        actor = Actor(config, settings_from_args(args), topics_from_args(args), trusted, telemetry_sink=sink)
        stats = run_until_signalled(coro_factory=actor.run)
    print(
        json.dumps(
            {
                "actor_id": config.actor_id,
                "unrolls_published": stats.unrolls_published,
                "unrolls_dropped": stats.unrolls_dropped,
                "env_steps": stats.env_steps,
                "episodes": stats.episodes,
            }
        )
    )
    return 0
