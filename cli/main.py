"""`tamiyo`: one command, one subcommand per service or tool."""

from __future__ import annotations

import argparse
import importlib
import sys

from tamiyo import __version__
from tamiyo.cli.user_errors import UserError
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
    "calibrate": "calibrate_cmd",
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
    parser.add_argument("--version", action="version", version=f"tamiyo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        importlib.import_module(f"tamiyo.cli.{module}").register(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments; a command with a settings file (`tamiyo train --config FILE`) is parsed again with the
    file's settings as its defaults, so a flag on the command line overrides the file wherever it stands."""
    args = parser.parse_args(argv)
    file_defaults = getattr(args, "file_defaults", None)
    if file_defaults is None:
        return args
    command_parser = _subparser(parser, args.command)
    defaults = file_defaults(args, command_parser)
    if not defaults:
        return args
    command_parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise LookupError(command)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse(parser, argv)
    except UserError as err:  # e.g. an unreadable --config file
        print(f"tamiyo: error: {err}", file=sys.stderr)
        return 2
    tune_allocator()  # before any tensor exists: every command of the CLI runs torch hot paths or starts them
    if args.command in SERVICES:
        from tamiyo.bus.observability import setup_observability

        setup_observability(args.command)
    try:
        return int(args.handler(args) or 0)
    except UserError as err:  # something the user can fix (a key, a setting, a file): one line, what to do
        print(f"tamiyo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
