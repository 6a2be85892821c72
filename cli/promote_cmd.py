"""`tamiyo promote`: evaluate candidate snapshots, pick one by Pareto selection, publish it for serving.

Each candidate is evaluated exactly like `tamiyo eval` (greedy, held-out
tasks, the same task seeds for every candidate); the objectives are mean
return (max), worst-decile return (max) and parameters added (min); the
choice is made by `tamiyo.learner.pareto.select`.  The chosen snapshot's
weights and config are published unchanged, signed with the Ed25519 key of
``--signing-key`` / ``TAMIYO_POLICY_SIGNING_KEY``, to
the run's compacted `policy` topic under ``--policy-id`` (default
``tamiyo-serving``, which `tamiyo serve` follows) with a version newer than
any already there.  Without ``--bootstrap`` (or with ``--dry-run``) it only
prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tamiyo.bus.clients import KafkaSettings, add_kafka_arguments, settings_from_args
from tamiyo.cli.common import add_run_arguments, setup_logging, topics_from_args
from tamiyo.cli.keys import add_signing_arguments, signer_from_args
from tamiyo.contracts.signing import PolicySigner

DEFAULT_POLICY_ID = "tamiyo-serving"


def _weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected name=weight[,name=weight], got {text!r}") from None
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("promote", help="Pareto-select the snapshot to serve among candidates; publish it (signed)")
    p.add_argument("--candidates", nargs="+", required=True, metavar="POLICY", help="policy .safetensors (or run dirs)")
    p.add_argument("--env", default="host-sim", choices=("host-sim", "host-train"))
    p.add_argument("--tasks", type=int, default=20, help="held-out tasks per candidate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="eval")
    p.add_argument(
        "--weights",
        type=_weights,
        default=None,
        help="choice on the first front: mean_return=0.5,worst_decile_return=0.3,params_added=0.2 (default)",
    )
    p.add_argument("--policy-id", default=DEFAULT_POLICY_ID, help="serving policy id to publish under")
    p.add_argument("--version", type=int, default=None, help="snapshot version (default: newest on the topic + 1)")
    p.add_argument("--dry-run", action="store_true", help="evaluate and choose; publish nothing")
    add_run_arguments(p)
    add_kafka_arguments(p)
    add_signing_arguments(p)
    p.set_defaults(handler=_handle)


def _weights_path(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        path = path / "policy.safetensors"
    if path.suffix != ".safetensors" or not path.exists() or not path.with_suffix(".json").exists():
        raise SystemExit(f"tamiyo promote: error: {text}: need a policy .safetensors with its .json beside it")
    return path


def evaluate_candidates(paths: list[Path], env: str, tasks: int, seed: int, split: str) -> list[dict]:
    from tamiyo.learner.pareto import objectives_from_eval
    from tamiyo.producers.envs import make_env
    from tamiyo.producers.evaluate import evaluate
    from tamiyo.producers.policy_controller import PolicyController

    schema = make_env(env).schema
    out = []
    for path in paths:
        controller = PolicyController.from_file(path)
        try:
            controller.require_schema(schema)
        except ValueError as err:
            raise SystemExit(f"tamiyo promote: error: {err}") from None
        result = evaluate(controller, env, tasks, seed, split=split)
        out.append(
            {
                "candidate": str(path),
                "controller": result["controller"],
                "objectives": objectives_from_eval(result),
                "return_ci95": result["return_ci95"],
                "mean_final_val_acc": result["mean_final_val_acc"],
            }
        )
    return out


def choose(evaluated: list[dict], weights: dict[str, float] | None) -> dict:
    from tamiyo.learner.pareto import select

    sel = select([c["objectives"] for c in evaluated], weights)
    for i, c in enumerate(evaluated):
        c["front"] = int(sel.ranks[i])
        c["crowding_distance"] = float(sel.crowding[i]) if sel.crowding[i] != float("inf") else "inf"
        c["score"] = float(sel.scores[i]) if sel.ranks[i] == 0 else None
    return {
        "frontier": [evaluated[i]["candidate"] for i in sel.frontier()],
        "order": [evaluated[i]["candidate"] for i in sel.order],
        "chosen": evaluated[sel.chosen]["candidate"],
        "chosen_index": sel.chosen,
        "candidates": evaluated,
    }


async def _newest_version(settings: KafkaSettings, topic: str, policy_id: str) -> int:
    """Newest version of ``policy_id`` on the (compacted) policy topic; -1 if none."""
    from tamiyo.bus.topic_pass import TopicMissing
    from tamiyo.cli.policy_topic import newest_version

    try:
        return await newest_version(settings, topic, policy_id, client_id="tamiyo-promote")
    except TopicMissing:
        raise SystemExit(f"tamiyo promote: error: topic {topic} not found (tamiyo topics create --run ...)") from None
    except TimeoutError as err:
        raise SystemExit(f"tamiyo promote: error: {err}") from None


async def publish(
    settings: KafkaSettings, topic: str, policy_id: str, path: Path, version: int | None, signer: PolicySigner
) -> dict:
    """Sign and publish ``path`` under ``policy_id`` with a version newer than any on ``topic``."""
    from tamiyo.bus.clients import make_producer
    from tamiyo.contracts.codec import EnvelopeEncoder
    from tamiyo.contracts.signing import sign_snapshot

    newest = await _newest_version(settings, topic, policy_id)
    if version is None:
        version = max(newest, 0) + 1
    elif version <= newest:
        raise SystemExit(f"tamiyo promote: error: --version {version} is not newer than {newest} on {topic}")
    config_json = path.with_suffix(".json").read_text()
    source_version = int(json.loads(config_json).get("version", 0))
    snap = sign_snapshot(
        policy_id=policy_id,
        version=version,
        weights=path.read_bytes(),
        config_json=config_json,
        signer=signer,
        algo="pareto-promote",
        learner_step=source_version,
    )
    producer = make_producer(settings.with_client_id("tamiyo-promote"))
    await producer.start()
    try:
        enc = EnvelopeEncoder(source="promote", producer_id=f"promote-{os.getpid():x}")
        meta = await producer.send_and_wait(topic, enc.encode(snap), key=policy_id.encode())
    finally:
        await producer.stop()
    return {
        "topic": topic,
        "policy_id": policy_id,
        "version": version,
        "offset": meta.offset,
        "sha256": snap.sha256.hex(),
        "key_id": signer.key_id,
    }


def _handle(args: argparse.Namespace) -> int:
    import asyncio

    setup_logging(args.verbose)
    publishing = bool(args.bootstrap) and not args.dry_run
    signer = signer_from_args(args) if publishing else None  # before the evaluation: fail fast without a key
    paths = [_weights_path(c) for c in args.candidates]
    evaluated = evaluate_candidates(paths, args.env, args.tasks, args.seed, args.split)
    report = {
        "env": args.env,
        "tasks": args.tasks,
        "seed": args.seed,
        "split": args.split,
        **choose(evaluated, args.weights),
    }
    if signer is not None:
        topics = topics_from_args(args)
        chosen = paths[report["chosen_index"]]
        report["published"] = asyncio.run(
            publish(settings_from_args(args), topics.policy, args.policy_id, chosen, args.version, signer)
        )
    else:
        report["published"] = None
    print(json.dumps(report))
    return 0
