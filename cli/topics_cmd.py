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
    add_kafka_arguments(c, bootstrap_required=True)
    c.set_defaults(handler=_create)
    ls = tsub.add_parser("list", help="list topics on the cluster")
    add_kafka_arguments(ls, bootstrap_required=True)
    ls.set_defaults(handler=_list)


def _create(args: argparse.Namespace) -> int:
    created = asyncio.run(
        ensure_topics(
            settings_from_args(args),
            Topics.for_run(args.run),
            partitions=args.partitions,
            trajectory_partitions=args.trajectory_partitions,
            replication_factor=args.replication_factor,
        )
    )
    print(json.dumps(created))
    return 0


def _list(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(list_topics(settings_from_args(args)))))
    return 0
