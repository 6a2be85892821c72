"""Headroom on real training (issue 14): what a well-timed growth schedule is worth over `none`.

1. Grid-search the knobs of the `tuned` schedule (`producers/controllers.TunedController`: epochs a seed
   trains before blending, the largest or the cheapest blueprint first, when and how often the LR is
   lowered at the end) on *training* tasks
   (``split="train"``).
2. Evaluate the best schedule, `none` and `heuristic` on *held-out* tasks (``split="eval"``, a disjoint
   task stream), paired by task: the mean and 95% Student-t interval of best - none, heuristic - none
   and best - heuristic.

With ``--policy FILE`` a trained policy (greedy) is evaluated on the same held-out tasks too, paired with
each of them: how much of the schedule's headroom it captures.

Every grid point is reported (JSON to stdout, and ``--json``), with a PNG of the grid and of the paired
differences.  On host-train each episode really trains a host network, so the defaults take minutes:

    python bench/headroom.py                      # host-train, 12 schedules x 12 training tasks, 50 held out
    python bench/headroom.py --env host-sim --train-tasks 40 --eval-tasks 200   # the surrogate, seconds
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tamiyo.producers.controllers import TunedController
from tamiyo.producers.evaluate import evaluate, paired_difference

# The knobs of TunedController: epochs a seed trains before blending, which blueprint it tries first
# (a first run with only the largest found its accuracy gain paid back in rent), and the end-of-run LR decay.
KNOBS = ("train_epochs", "blueprint", "lr_decay_epochs", "lr_decay_steps")
GRID: list[dict[str, Any]] = [
    {"train_epochs": train, "blueprint": blueprint, "lr_decay_epochs": decay[0], "lr_decay_steps": decay[1]}
    for blueprint, train, decay in itertools.product(("smallest", "largest"), (2, 3, 5), ((0, 0), (6, 2)))
]


def grid_search(env: str, grid: list[dict[str, Any]], tasks: int, seed: int) -> list[dict[str, Any]]:
    """Mean training-task return of every schedule in ``grid`` (the same tasks for each)."""
    rows = []
    for i, knobs in enumerate(grid, 1):
        result = evaluate(TunedController(**knobs), env, tasks, seed, split="train")
        rows.append(
            {
                **knobs,
                "mean_return": result["mean_return"],
                "return_ci95": result["return_ci95"],
                "mean_final_val_acc": result["mean_final_val_acc"],
                "mean_params_added": result["mean_params_added"],
                "seconds": result["seconds"],
            }
        )
        print(f"[{i}/{len(grid)}] {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def headroom(
    env: str, grid: list[dict[str, Any]], train_tasks: int, eval_tasks: int, seed: int, policy: str | None = None
) -> dict:
    started = time.perf_counter()
    rows = grid_search(env, grid, train_tasks, seed)
    best = {k: v for k, v in max(rows, key=lambda r: r["mean_return"]).items() if k in KNOBS}
    tuned = TunedController(**best)
    held_out = {name: evaluate(c, env, eval_tasks, seed + 1) for name, c in
                (("tuned", tuned), ("none", "none"), ("heuristic", "heuristic"))}  # fmt: skip
    if policy is not None:
        import tamiyo

        held_out["policy"] = tamiyo.evaluate(policy, env=env, tasks=eval_tasks, seed=seed + 1)
    print(f"held out: { {k: round(v['mean_return'], 4) for k, v in held_out.items()} }", file=sys.stderr)

    def paired(a: str, b: str) -> dict[str, float]:
        mean, lo, hi = paired_difference(held_out[a], held_out[b])
        return {"mean": mean, "ci95": [lo, hi], "above_zero": lo > 0}  # type: ignore[dict-item]

    pairs = [("tuned", "none"), ("heuristic", "none"), ("tuned", "heuristic")]
    if policy is not None:
        pairs += [("policy", "none"), ("policy", "heuristic"), ("policy", "tuned")]
    return {
        "env": env,
        "policy": policy,
        "train_tasks": train_tasks,
        "eval_tasks": eval_tasks,
        "seed": seed,
        "grid": rows,
        "best": best,
        "held_out": {
            name: {
                "mean_return": r["mean_return"],
                "return_ci95": r["return_ci95"],
                "mean_final_val_acc": r["mean_final_val_acc"],
                "mean_params_added": r["mean_params_added"],
            }
            for name, r in held_out.items()
        },
        "paired": {f"{a}_minus_{b}": paired(a, b) for a, b in pairs},
        "seconds": time.perf_counter() - started,
    }


def save_png(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rows = result["grid"]
    labels = [f"{r['blueprint'][0]} {r['train_epochs']}/{r['lr_decay_epochs']}/{r['lr_decay_steps']}" for r in rows]
    means = np.array([r["mean_return"] for r in rows])
    errors = np.array([[m - r["return_ci95"][0], r["return_ci95"][1] - m] for m, r in zip(means, rows, strict=True)])
    left.errorbar(range(len(rows)), means, yerr=errors.T, fmt="o", capsize=3)
    left.set_xticks(range(len(rows)), labels, rotation=60, fontsize=7)
    left.set_xlabel("blueprint (s: smallest, l: largest) train epochs / LR-decay epochs / LR-decay steps")
    left.set_ylabel(f"mean return, {result['train_tasks']} training tasks")
    left.set_title(f"tuned schedules on {result['env']}")
    names = list(result["paired"])
    diffs = [result["paired"][n] for n in names]
    mid = np.array([d["mean"] for d in diffs])
    span = np.array([[d["mean"] - d["ci95"][0], d["ci95"][1] - d["mean"]] for d in diffs])
    right.errorbar(range(len(names)), mid, yerr=span.T, fmt="o", capsize=4)
    right.axhline(0.0, color="grey", lw=0.8)
    right.set_xticks(range(len(names)), [n.replace("_minus_", " - ") for n in names])
    right.set_ylabel(f"paired return difference, {result['eval_tasks']} held-out tasks (95% CI)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="host-train", choices=("host-train", "host-sim"))
    ap.add_argument("--train-tasks", type=int, default=12)
    ap.add_argument("--eval-tasks", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--grid", type=int, default=len(GRID), help="use the first N schedules of the grid")
    ap.add_argument("--policy", default=None, help="a policy.safetensors to evaluate on the held-out tasks too")
    ap.add_argument("--json", default=None, help="also write the JSON here")
    ap.add_argument("--png", default=None, help="default: bench/results/headroom_<env>.png")
    args = ap.parse_args(argv)
    result = headroom(args.env, GRID[: args.grid], args.train_tasks, args.eval_tasks, args.seed, args.policy)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    save_png(result, Path(args.png or f"bench/results/headroom_{args.env.replace('-', '_')}.png"))
    return result


if __name__ == "__main__":
    main()
