"""Helpers shared by the service subcommands: logging, signals, run topics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tamiyo.contracts.topics import Topics

T = TypeVar("T")

# The names of learner/presets.py's PRESETS, for the CLI's `--preset` choices without importing
# torch at start-up (tests/services/test_learning_over_kafka.py checks the two agree).
PRESET_NAMES: tuple[str, ...] = ("cartpole", "host-sim")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiokafka logs every transient coordinator hiccup at WARNING/ERROR; keep ours readable.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if not verbose else logging.INFO)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="", help="run name: topics are tamiyo.<run>.<topic>")
    parser.add_argument("--verbose", action="store_true")


def topics_from_args(args: argparse.Namespace) -> Topics:
    return Topics.for_run(args.run)


def run_until_signalled(coro_factory: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``coro_factory(stop)`` with SIGINT/SIGTERM setting ``stop`` for a clean shutdown; its result."""

    async def runner() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await coro_factory(stop)

    return asyncio.run(runner())
