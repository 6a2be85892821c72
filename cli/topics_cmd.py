"""`tamiyo topics create|list`: the run's topics on any Kafka cluster."""

from __future__ import annotations

import argparse
import asyncio
import json

from tamiyo.bus.admin import ensure_topics, list_topics
from tamiyo.bus.clients import add_kafka_arguments, settings_from_args
from tamiyo.contracts.topics import Topics


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create or list the run's topics")
    tsub = p.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    c = tsub.add_parser("create", help="create the run's topics idempotently (policy compacted)")
    c.add_argument("--run", default="", help="run name; topics are tamiyo.<run>.<topic>")
    c.add_argument("--partitions", type=int, default=1)
    c.add_argument("--trajectory-partitions", type=int, default=None)
    c.add_argument("--replication-factor", type=int, default=1)
    c.add_argument(
        "--grant-acls",
        action="store_true",
        help="also grant each service role (actor, replay, learner, serve) least-privilege ACLs on these topics "
        "(a broker with an authorizer; as an admin principal)",
    )
    add_kafka_arguments(c, bootstrap_required=True)
    c.set_defaults(handler=_create)
    ls = tsub.add_parser("list", help="list topics on the cluster")
    add_kafka_arguments(ls, bootstrap_required=True)
    ls.set_defaults(handler=_list)


def _create(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    created = asyncio.run(
        ensure_topics(
            settings,
            Topics.for_run(args.run),
            partitions=args.partitions,
            trajectory_partitions=args.trajectory_partitions,
            replication_factor=args.replication_factor,
        )
    )
    if args.grant_acls:
        from tamiyo.bus.acls import grant_run_acls

        granted = asyncio.run(grant_run_acls(settings, args.run))
        print(json.dumps({"created": created, "acls_granted": len(granted)}))
    else:
        print(json.dumps(created))
    return 0


def _list(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(list_topics(settings_from_args(args)))))
    return 0
