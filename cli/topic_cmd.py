"""`tamiyo topic dump|tail|stats|record|replay`: look inside a topic, record it, re-publish it.

Readers never join a consumer group or commit offsets.  ``dump``/``tail`` write
one JSON document per record to stdout (``--format json``: indented;
``jsonl``: one compact line each) and a one-line JSON summary to stderr;
``stats``/``record``/``replay`` print one JSON object.  Problems the user can fix
(unknown topic, bad file) are one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the handlers import these lazily: `tamiyo --help` stays fast
    import asyncio

    from tamiyo.bus.clients import KafkaSettings
    from tamiyo.consumers.topic_reader import ReadRange

    Main = Callable[[KafkaSettings, asyncio.Event], Awaitable[int]]


def _add_range_arguments(p: argparse.ArgumentParser, *, partitions: bool = True) -> None:
    g = p.add_argument_group("where to start (default: the beginning; tail: the end)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--from-offset", type=int, default=None, metavar="N", help="start at offset N of each partition")
    x.add_argument(
        "--from-time",
        default=None,
        metavar="TIME",
        help="start at the first record at/after TIME (ISO 8601, e.g. 2026-11-26T01:00:00Z, or epoch ms)",
    )
    x.add_argument("--last", type=int, default=None, metavar="N", help="the last N records of each partition")
    if partitions:
        g.add_argument(
            "--partition", type=int, action="append", default=None, metavar="P", help="only partition P (repeatable)"
        )


def register(sub: argparse._SubParsersAction) -> None:
    from tamiyo.bus.clients import add_kafka_arguments

    p = sub.add_parser("topic", help="debugging tools: dump, tail, stats, record and replay a topic")
    tsub = p.add_subparsers(dest="topic_command", required=True, metavar="ACTION")

    d = tsub.add_parser("dump", help="decode every record of a range to JSON (bad records with their reason)")
    d.add_argument("topic")
    _add_range_arguments(d)
    d.add_argument("--format", choices=("json", "jsonl"), default="json")
    d.add_argument("--full", action="store_true", help="decode packed arrays (graphs, trajectories) to lists")
    d.add_argument("--max", type=int, default=None, metavar="N", help="at most N records")
    d.set_defaults(handler=_dump, follow=False, max_seconds=None)

    t = tsub.add_parser("tail", help="follow a topic live, rendered like dump (Ctrl-C / SIGTERM to stop)")
    t.add_argument("topic")
    _add_range_arguments(t)
    t.add_argument("--format", choices=("json", "jsonl"), default="jsonl")
    t.add_argument("--full", action="store_true")
    t.add_argument("--max", type=int, default=None, metavar="N", help="stop after N records")
    t.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    t.set_defaults(handler=_dump, follow=True)

    s = tsub.add_parser("stats", help="counts, sizes, payload types, schema versions, reasons, consumer-group lag")
    s.add_argument("topic")
    _add_range_arguments(s)
    s.add_argument("--max", type=int, default=None, metavar="N", help="scan at most N records")
    s.add_argument("--no-groups", action="store_true", help="skip the consumer-group lag")
    s.set_defaults(handler=_stats)

    r = tsub.add_parser("record", help="write a topic's records to a portable .tyrec file")
    r.add_argument("topic")
    r.add_argument("--out", required=True, metavar="FILE")
    _add_range_arguments(r)
    r.add_argument("--follow", action="store_true", help="keep recording new records until Ctrl-C/--max/--max-seconds")
    r.add_argument("--max", type=int, default=None, metavar="N")
    r.add_argument("--max-seconds", type=float, default=None)
    r.set_defaults(handler=_record)

    rp = tsub.add_parser(
        "replay",
        help="re-publish a topic's records (or a .tyrec file) to another topic, keys and values byte-for-byte",
    )
    rp.add_argument("topic", nargs="?", default=None, help="source topic (or give --from-file)")
    rp.add_argument("--to", required=True, metavar="TOPIC", help="target topic (created if missing)")
    rp.add_argument("--from-file", default=None, metavar="FILE", help="a recording made by `tamiyo topic record`")
    _add_range_arguments(rp)
    rp.add_argument("--rate", type=float, default=None, metavar="R", help="at most R records per second")
    rp.add_argument("--max", type=int, default=None, metavar="N")
    rp.add_argument("--keep-timestamps", action="store_true", help="keep the original record timestamps")
    rp.add_argument("--no-create", action="store_true", help="fail instead of creating a missing target topic")
    rp.add_argument("--partitions", type=int, default=1, help="partitions of a target topic created from a file")
    rp.set_defaults(handler=_replay)

    for sp in (d, t, s, r, rp):
        sp.add_argument("--wait-topic", type=float, default=10.0, metavar="S", help="wait S seconds for the topic")
        sp.add_argument("--verbose", action="store_true")
        add_kafka_arguments(sp, bootstrap_required=True)


def _range(args: argparse.Namespace) -> ReadRange:
    from tamiyo.consumers.topic_reader import ReadRange, parse_time

    return ReadRange(
        from_offset=args.from_offset,
        from_time_ms=parse_time(args.from_time) if args.from_time is not None else None,
        last=args.last,
        partitions=tuple(args.partition) if getattr(args, "partition", None) else None,
    )


def _run(args: argparse.Namespace, factory: Main) -> int:
    """Run ``factory(stop)`` with SIGINT/SIGTERM -> stop; user errors -> one line on stderr, exit 2."""
    from aiokafka.errors import KafkaError

    from tamiyo.bus.clients import settings_from_args
    from tamiyo.cli.common import run_until_signalled, setup_logging
    from tamiyo.consumers.recording import RecordingError
    from tamiyo.consumers.topic_reader import TopicToolError

    setup_logging(args.verbose)
    try:
        settings = settings_from_args(args)
        code = run_until_signalled(coro_factory=lambda stop: factory(settings, stop))
        return code if isinstance(code, int) else 0
    except (TopicToolError, RecordingError, OSError, KafkaError) as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2


def _dump(args: argparse.Namespace) -> int:
    from tamiyo.consumers.render import render_record, to_json
    from tamiyo.consumers.topic_reader import read_topic

    rng = _range(args)
    pretty = args.format == "json"

    async def main(settings: KafkaSettings, stop: asyncio.Event) -> int:
        shown = bad = 0
        kw = {"follow": args.follow, "stop": stop, "max_records": args.max, "max_seconds": args.max_seconds}
        kw["metadata_timeout_s"] = args.wait_topic
        async with read_topic(settings, args.topic, rng, **kw) as (reader, records):
            if args.follow:  # tells a user (or a script) that records produced from now on will be shown
                print(json.dumps({"following": args.topic, "from_offsets": reader.start}), file=sys.stderr, flush=True)
            try:
                async for rec in records:
                    doc = render_record(rec, full=args.full)
                    shown += 1
                    bad += not doc["ok"]
                    sys.stdout.write(to_json(doc, pretty) + "\n")
                    sys.stdout.flush()
            except BrokenPipeError:  # `tamiyo topic dump ... | head`: stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
        print(json.dumps({"topic": args.topic, "records": shown, "undecodable": bad}), file=sys.stderr)
        return 0

    return _run(args, main)


def _stats(args: argparse.Namespace) -> int:
    from tamiyo.consumers.topic_stats import topic_stats

    rng = _range(args)

    async def main(settings: KafkaSettings, stop: asyncio.Event) -> int:
        out = await topic_stats(
            settings,
            args.topic,
            rng,
            max_records=args.max,
            stop=stop,
            groups=not args.no_groups,
            metadata_timeout_s=args.wait_topic,
        )
        print(json.dumps(out, indent=2))
        return 0

    return _run(args, main)


def _record(args: argparse.Namespace) -> int:
    from tamiyo.consumers.topic_replay import record_topic

    rng = _range(args)

    async def main(settings: KafkaSettings, stop: asyncio.Event) -> int:
        out = await record_topic(
            settings,
            args.topic,
            args.out,
            rng,
            follow=args.follow,
            stop=stop,
            max_records=args.max,
            max_seconds=args.max_seconds,
            metadata_timeout_s=args.wait_topic,
        )
        print(json.dumps(out))
        return 0

    return _run(args, main)


def _replay(args: argparse.Namespace) -> int:
    from tamiyo.consumers.topic_replay import replay_file, replay_topic

    if (args.topic is None) == (args.from_file is None):
        print("error: give a source TOPIC or --from-file FILE (not both)", file=sys.stderr)
        return 2
    if args.from_file is not None and (args.from_offset, args.from_time, args.last, args.partition) != (None,) * 4:
        print(
            "error: --from-offset/--from-time/--last/--partition apply to a source topic, not --from-file",
            file=sys.stderr,
        )
        return 2
    rng = _range(args) if args.topic is not None else None
    common = {"rate": args.rate, "keep_timestamps": args.keep_timestamps, "create": not args.no_create}

    async def main(settings: KafkaSettings, stop: asyncio.Event) -> int:
        if args.from_file is not None:
            out = await replay_file(
                settings, args.from_file, args.to, partitions=args.partitions, stop=stop, max_records=args.max, **common
            )
        else:
            out = await replay_topic(
                settings,
                args.topic,
                args.to,
                rng,
                stop=stop,
                max_records=args.max,
                metadata_timeout_s=args.wait_topic,
                **common,
            )
        print(json.dumps(out))
        return 0

    return _run(args, main)
