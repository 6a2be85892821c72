"""`tamiyo serve`: answer SystemStatePackets with AdaptationCommands using the latest verified policy."""

from __future__ import annotations

import argparse
import json

from tamiyo.bus.clients import add_kafka_arguments, settings_from_args
from tamiyo.cli.common import add_run_arguments, run_until_signalled, setup_logging, topics_from_args
from tamiyo.cli.keys import add_trust_arguments, trusted_from_args

DEFAULT_POLICY_ID = "tamiyo-serving"  # what `tamiyo promote` publishes (kept in step with consumers/serving.py)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serving: state packets in, greedy AdaptationCommands out (key = run id)")
    p.add_argument("--env", default="host-sim", choices=("host-sim", "host-train"), help="the packets' env schema")
    p.add_argument(
        "--policy-id",
        default=DEFAULT_POLICY_ID,
        help=f"follow this policy id on the policy topic (default {DEFAULT_POLICY_ID}, set by `tamiyo promote`)",
    )
    p.add_argument("--serve-id", default="serve-0")
    p.add_argument("--group-id", default=None, help="consumer group (default tamiyo-serve-<run>)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--max-batch", type=int, default=64, help="state packets per forward pass")
    p.add_argument("--telemetry-every", type=float, default=5.0)
    p.add_argument("--wait-for-policy", type=float, default=120.0, help="seconds to wait for a first snapshot")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--max-decisions", type=int, default=None)
    p.add_argument("--health-file", default=None, help="touched every poll (liveness probe for containers)")
    add_run_arguments(p)
    add_kafka_arguments(p, bootstrap_required=True)
    add_trust_arguments(p)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    trusted = trusted_from_args(args)  # before torch is imported: a missing key is one line, at once
    from tamiyo.consumers.serving import ServeConfig, ServeService

    config = ServeConfig(
        env=args.env,
        policy_id=args.policy_id,
        serve_id=args.serve_id,
        group_id=args.group_id,
        run_id=args.run,
        device=args.device,
        torch_threads=args.threads,
        max_batch=args.max_batch,
        telemetry_every_s=args.telemetry_every,
        wait_for_policy_s=args.wait_for_policy,
        max_seconds=args.max_seconds,
        max_decisions=args.max_decisions,
        health_file=args.health_file,
    )
    service = ServeService(config, settings_from_args(args), topics_from_args(args), trusted)
    stats = run_until_signalled(coro_factory=service.run)
    summary = {"serve_id": config.serve_id, **service.telemetry_metrics()}
    summary["dead_letter_reasons"] = service.dead_letter_reasons
    summary["decisions"] = stats.decisions
    print(json.dumps(summary))
    return 0
