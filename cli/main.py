"""`tamiyo`: one command, one subcommand per service or tool."""

from __future__ import annotations

import argparse
import importlib
import sys

from tamiyo.cli.keys import KeyConfigError
from tamiyo.runtime import tune_allocator

# name -> module in tamiyo.cli that defines `register(subparsers)`; each module
# registers its own parser and handler so services stay independent.
COMMANDS: dict[str, str] = {
    "broker": "broker_cmd",
    "topics": "topics_cmd",
    "demo": "demo_cmd",
    "actor": "actor_cmd",
    "replay": "replay_cmd",
    "learner": "learner_cmd",
    "eval": "eval_cmd",
    "train": "train_cmd",
    "topic": "topic_cmd",
    "serve": "serve_cmd",
    "promote": "promote_cmd",
    "keys": "keys_cmd",
}


# Long-running services get OpenTelemetry providers (exporters chosen by OTEL_* variables).
SERVICES = frozenset({"actor", "replay", "learner", "serve", "train"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tamiyo",
        description="Distributed RL (PPO, IMPALA/V-trace) over Kafka for a GNN morphogenetic controller.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        importlib.import_module(f"tamiyo.cli.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()  # before any tensor exists: every command of the CLI runs torch hot paths or starts them
    if args.command in SERVICES:
        from tamiyo.bus.observability import setup_observability

        setup_observability(args.command)
    try:
        return int(args.handler(args) or 0)
    except KeyConfigError as err:  # a missing or unusable key: one line, before anything started
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
