"""`tamiyo eval`: evaluate a controller (baseline or trained snapshot) on held-out host tasks.

A thin layer over the Python API's `tamiyo.evaluate` (cli/api.py).  ``--format json`` (the default when
stdout is not a terminal) prints the result as one JSON document for programs; ``--format table`` (the
default on a terminal) prints a short summary for a person.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tamiyo.cli.api import BASELINE_CONTROLLERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate heuristic|random|none|tuned|SNAPSHOT on held-out tasks")
    p.add_argument(
        "--controller", default="heuristic", help=f"{'|'.join(BASELINE_CONTROLLERS)} or a policy .safetensors"
    )
    p.add_argument(
        "--env", default="host-sim", help="host-sim (default), host-sim:FILE (calibrated), host-train[:paired]"
    )
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="eval", help="task split (held-out tasks by default)")
    p.add_argument("--sample", action="store_true", help="sample from the policy instead of acting greedily")
    p.add_argument("--per-task", action="store_true", help="include every task's result")
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default=None,
        help="table for a person, json for programs (default: table on a terminal, else json)",
    )
    p.add_argument(
        "--torch-threads", type=int, default=1, help="one thread is fastest for these small graphs (default 1)"
    )
    p.set_defaults(handler=_handle)


PER_TASK_SUMMARY = ("task_seed", "return", "final_val_acc", "params_added")


def format_table(result: dict[str, Any], per_task: bool = False) -> str:
    """A few aligned lines: the controller, the tasks, the mean return with its interval, the means."""
    lo, hi = result["return_ci95"]
    lines = [
        f"{result['controller']} on {result['tasks']} {result['split']} tasks of {result['env']} "
        f"(seed {result['seed']}, {result['seconds']:.1f} s)",
        f"  mean return          {result['mean_return']:.4f}   95% CI [{lo:.4f}, {hi:.4f}]",
        f"  mean final val acc   {result['mean_final_val_acc']:.4f}",
        f"  mean params added    {result['mean_params_added']:.0f}",
    ]
    if per_task:
        lines.append(f"  {'task seed':>12}  {'return':>8}  {'val acc':>8}  {'params added':>12}")
        for t in result["per_task"]:
            lines.append(
                f"  {t['task_seed']:>12}  {t['return']:>8.4f}  {t['final_val_acc']:>8.4f}  {t['params_added']:>12}"
            )
    return "\n".join(lines)


def _handle(args: argparse.Namespace) -> int:
    import torch

    from tamiyo.cli.api import evaluate

    torch.set_num_threads(args.torch_threads)
    result = evaluate(args.controller, args.env, args.tasks, args.seed, split=args.split, sample=args.sample)
    if not args.per_task:
        result["per_task"] = [{k: t[k] for k in PER_TASK_SUMMARY} for t in result["per_task"]]
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    print(format_table(result, args.per_task) if fmt == "table" else json.dumps(result))
    return 0
