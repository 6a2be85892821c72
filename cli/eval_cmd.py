"""`tamiyo eval`: evaluate a controller (baseline or trained snapshot) on held-out host tasks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI starts without torch
    from tamiyo.producers.controllers import Controller
    from tamiyo.producers.policy_controller import PolicyController

BASELINE_NAMES = ("heuristic", "random", "none", "tuned")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate heuristic|random|none|tuned|SNAPSHOT on held-out tasks (JSON)")
    p.add_argument("--controller", default="heuristic", help=f"{'|'.join(BASELINE_NAMES)} or a policy .safetensors")
    p.add_argument("--env", default="host-sim", choices=("host-sim", "host-train"))
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="eval", help="task split (held-out tasks by default)")
    p.add_argument("--sample", action="store_true", help="sample from the policy instead of acting greedily")
    p.add_argument("--per-task", action="store_true", help="include every task's result")
    p.add_argument(
        "--torch-threads", type=int, default=1, help="one thread is fastest for these small graphs (default 1)"
    )
    p.set_defaults(handler=_handle)


def make_eval_controller(name: str, seed: int, sample: bool = False) -> Controller | PolicyController:
    if name in BASELINE_NAMES:
        from tamiyo.producers.controllers import make_controller

        return make_controller(name, seed)
    if not Path(name).exists():
        raise SystemExit(f"tamiyo eval: error: {name!r} is neither a baseline ({', '.join(BASELINE_NAMES)}) nor a file")
    from tamiyo.producers.policy_controller import PolicyController

    return PolicyController.from_file(name, sample=sample)


def _handle(args: argparse.Namespace) -> int:
    import torch

    from tamiyo.producers.evaluate import evaluate

    torch.set_num_threads(args.torch_threads)
    controller = make_eval_controller(args.controller, args.seed, args.sample)
    if hasattr(controller, "require_schema"):
        from tamiyo.producers.envs import make_env

        try:
            controller.require_schema(make_env(args.env).schema)
        except ValueError as err:
            raise SystemExit(f"tamiyo eval: error: {err}") from None
    result = evaluate(controller, args.env, args.tasks, args.seed, split=args.split)
    if not args.per_task:
        result["per_task"] = [
            {k: t[k] for k in ("task_seed", "return", "final_val_acc", "params_added")} for t in result["per_task"]
        ]
    print(json.dumps(result))
    return 0
