"""`tamiyo broker up|down|status|fetch`: the local Kafka broker."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tamiyo.bus.broker import DEFAULT_DATA_DIR, DEFAULT_SECURE_DATA_DIR, BrokerError, LocalBroker, resolve_kafka


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="start/stop the local Apache Kafka broker (KRaft, 127.0.0.1)")
    bsub = p.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    for name, helptext in (
        ("up", "format storage on first use, start the broker, print its JSON"),
        ("down", "stop the broker cleanly"),
        ("status", "print the broker's state as JSON"),
        ("fetch", "resolve the Kafka jars from Maven Central into the cache (no broker started)"),
    ):
        q = bsub.add_parser(name, help=helptext)
        q.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help=f"default {DEFAULT_DATA_DIR} ({DEFAULT_SECURE_DATA_DIR} with --secure)",
        )
        q.add_argument(
            "--secure",
            action="store_true",
            help="SASL_SSL (TLS + SCRAM-SHA-512, a credential per service role) with ACLs; `up` prints the "
            "CA and credential files as paths",
        )
        if name == "up":
            q.add_argument("--port", type=int, default=None, help="client port (default 9092, or the last one used)")
            q.add_argument("--heap-mb", type=int, default=512)
            q.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the broker")
        q.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    try:
        if args.broker_command == "fetch":
            lib, version = resolve_kafka(quiet=False)
            print(json.dumps({"kafka_version": version, "lib": str(lib)}))
            return 0
        data_dir = args.data_dir or (DEFAULT_SECURE_DATA_DIR if args.secure else DEFAULT_DATA_DIR)
        broker = LocalBroker(data_dir, heap_mb=getattr(args, "heap_mb", 512))
        if args.broker_command == "up":
            print(broker.up(port=args.port, timeout_s=args.timeout, secure=args.secure).to_json())
        elif args.broker_command == "down":
            stopped = broker.down()
            print(json.dumps({"stopped": stopped, "data_dir": str(broker.data_dir)}))
        else:
            print(json.dumps(broker.status()))
        return 0
    except BrokerError as err:
        print(f"tamiyo broker: error: {err}", file=sys.stderr)
        return 2
