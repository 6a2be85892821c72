"""`tamiyo calibrate`: fit host-sim's parameters to real host training (issue 14).

Records host-train episodes under several controllers (``--controllers``; by default random, heuristic,
tuned and none) on training tasks, fits host-sim's `SimParams` to them (`producers/calibration.py`), checks the
fit on real episodes of other tasks it was not fitted to (``--holdout-tasks``), and writes:

- ``--out`` (default calibration/host_sim.json): the calibration file (`producers/calibration_file.py`);
- ``--report`` (default: beside it, ``.md``): for each controller and (action, lifecycle stage) group, the real
  vs simulated Δ validation accuracy (mean, spread, two-sample KS statistic) under the default and the fitted
  parameters, the episode returns, and the same totals on the held-out real episodes;
- ``--png`` (default: beside it): the accuracy curves, real against default and fitted host-sim.

Progress goes to stderr; the summary (JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

CONTROLLERS = ("random", "heuristic", "tuned", "none")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit host-sim's parameters to real host training (a calibration file)")
    p.add_argument("--real-env", default="host-train", choices=("host-train", "host-sim"),
                   help="what to calibrate against (host-sim: a self-check of the fit)")  # fmt: skip
    p.add_argument("--controllers", default=",".join(CONTROLLERS), help="comma-separated baseline controllers")
    p.add_argument("--tasks", type=int, default=16, help="real training tasks per controller to fit to")
    p.add_argument("--holdout-tasks", type=int, default=8, help="other real tasks per controller to check the fit")
    p.add_argument("--candidates", type=int, default=80, help="host-sim parameter sets tried (the default is one)")
    p.add_argument("--sim-tasks", type=int, default=32, help="host-sim tasks per controller for each candidate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="calibration/host_sim.json")
    p.add_argument("--report", default=None)
    p.add_argument("--png", default=None)
    p.add_argument("--recording", default=None,
                   help="keep the real episodes in this JSON file and reuse them when the same recording is asked "
                        "for again (refit without re-running host-train)")  # fmt: skip
    p.add_argument("--torch-threads", type=int, default=1)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from tamiyo.cli.extras import require_env_extras
    from tamiyo.cli.user_errors import UserError

    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()]
    from tamiyo.cli.api import BASELINE_CONTROLLERS

    unknown = sorted(set(controllers) - set(BASELINE_CONTROLLERS))
    if unknown or not controllers:
        raise UserError(f"--controllers takes {', '.join(BASELINE_CONTROLLERS)}, not {', '.join(unknown) or 'nothing'}")
    for name in ("tasks", "holdout_tasks", "candidates", "sim_tasks"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    require_env_extras(args.real_env, "tamiyo calibrate")
    import torch

    torch.set_num_threads(args.torch_threads)
    out = Path(args.out)
    summary = calibrate(args, controllers, out)
    print(json.dumps(summary, indent=2))
    return 0


def _progress(message: str) -> None:
    print(f"tamiyo calibrate: {message}", file=sys.stderr, flush=True)


def calibrate(args: argparse.Namespace, controllers: list[str], out: Path) -> dict[str, Any]:
    import dataclasses

    from tamiyo.producers.calibration import FITTED, discrepancy, fit, simulate
    from tamiyo.producers.calibration_file import calibration_document
    from tamiyo.producers.host_sim import SimParams

    started = time.perf_counter()
    real, holdout = _real_episodes(args, controllers)
    real_s = time.perf_counter() - started
    fitted, scored = fit(real, controllers, args.sim_tasks, args.candidates, args.seed, progress=_progress)
    default = SimParams()
    sim_default = simulate(default, controllers, args.sim_tasks, args.seed + 2)
    sim_fitted = simulate(fitted, controllers, args.sim_tasks, args.seed + 2)
    scores = {
        "fit_default": discrepancy(real, sim_default),
        "fit_calibrated": discrepancy(real, sim_fitted),
        "holdout_default": discrepancy(holdout, sim_default),
        "holdout_calibrated": discrepancy(holdout, sim_fitted),
    }
    parts = ("total", "mean_ks", "curve_rmse", "return_gap_in_spreads")
    totals = {k: {p: round(v[p], 4) for p in parts} for k, v in scores.items()}
    source = {"env": args.real_env, "controllers": controllers, "tasks": args.tasks,
              "holdout_tasks": args.holdout_tasks, "seed": args.seed, "split": "train",
              "transitions": len(real), "seconds_recording": real_s}  # fmt: skip
    doc = calibration_document(
        fitted,
        fitted_fields=sorted(FITTED),
        default_params=dataclasses.asdict(default),
        source=source,
        search={"candidates": args.candidates, "sim_tasks": args.sim_tasks, "scored": scored},
        discrepancy=totals,
        created_by="tamiyo calibrate",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    report = Path(args.report) if args.report else out.with_suffix(".md")
    report.write_text(_report(doc, scores))
    png = Path(args.png) if args.png else out.with_suffix(".png")
    _plot(real, sim_default, sim_fitted, png)
    _progress(f"wrote {out}, {report}, {png} ({time.perf_counter() - started:.0f} s)")
    return {"out": str(out), "report": str(report), "png": str(png), "discrepancy": totals,
            "sim_params": dataclasses.asdict(fitted), "seconds": time.perf_counter() - started}  # fmt: skip


def _real_episodes(args: argparse.Namespace, controllers: list[str]) -> tuple[list, list]:
    """The real episodes to fit to and to check on: recorded now, or read back from ``--recording``."""
    from tamiyo.producers.calibration import record, transitions_from_rows, transitions_to_rows
    from tamiyo.producers.envs import make_env
    from tamiyo.producers.host_env import HostEnv

    key = {"env": args.real_env, "controllers": controllers, "tasks": args.tasks,
           "holdout_tasks": args.holdout_tasks, "seed": args.seed}  # fmt: skip
    path = Path(args.recording) if args.recording else None
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("recording") == key:
            _progress(f"reusing the real episodes in {path}")
            return transitions_from_rows(saved["fit"]), transitions_from_rows(saved["holdout"])
        _progress(f"{path} holds another recording: recording again")
    env = make_env(args.real_env, seed=args.seed, split="train")
    assert isinstance(env, HostEnv)  # --real-env takes the host envs only
    _progress(f"recording {args.real_env}: {len(controllers)} controllers x {args.tasks} tasks")
    real = record(env, controllers, args.tasks, args.seed, progress=_progress)
    _progress(f"held-out check: {len(controllers)} controllers x {args.holdout_tasks} other tasks")
    holdout = record(env, controllers, args.holdout_tasks, args.seed + 1, progress=_progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"recording": key, "fit": transitions_to_rows(real), "holdout": transitions_to_rows(holdout)}
        path.write_text(json.dumps(doc))
    return real, holdout


def _report(doc: dict[str, Any], scores: dict[str, dict[str, Any]]) -> str:
    src = doc["source"]
    lines = [
        f"# host-sim calibrated to {src['env']}",
        "",
        f"Fitted to {src['tasks']} training tasks per controller ({', '.join(src['controllers'])}; "
        f"{src['transitions']} transitions), checked on {src['holdout_tasks']} other tasks per controller. "
        f"{doc['search']['candidates']} parameter sets tried, {doc['search']['sim_tasks']} host-sim tasks each.",
        "",
        "Discrepancy (0: indistinguishable; mean KS + curve RMSE / 0.1 + return gap / 2 spreads):",
        "",
        "| data | host-sim | total | mean KS | accuracy-curve RMSE | return gap (spreads) |",
        "|---|---|---|---|---|---|",
        *[
            f"| {data} | {which} | {s['total']:.3f} | {s['mean_ks']:.3f} | {s['curve_rmse']:.4f} | "
            f"{s['return_gap_in_spreads']:.3f} |"
            for data, which, s in (
                ("fitted to", "default", scores["fit_default"]),
                ("fitted to", "calibrated", scores["fit_calibrated"]),
                ("held out", "default", scores["holdout_default"]),
                ("held out", "calibrated", scores["holdout_calibrated"]),
            )
        ],
        "",
        "| parameter | default | calibrated |",
        "|---|---|---|",
        *[f"| {k} | {doc['default_params'][k]:.4g} | {v:.4g} |" for k, v in doc["sim_params"].items()],
        "",
        "## Episode return (mean), real vs simulated",
        "",
        "| controller | real | default | calibrated |",
        "|---|---|---|---|",
        *[
            f"| {c} | {r['real']:.4f} | {r['sim']:.4f} | {scores['fit_calibrated']['returns'][c]['sim']:.4f} |"
            for c, r in scores["fit_default"]["returns"].items()
        ],
        "",
        "## Δ validation accuracy per step, by controller and (action / stage of the slot it names)",
        "",
        "| group | real n | real mean ± sd | default mean ± sd | KS | calibrated mean ± sd | KS |",
        "|---|---|---|---|---|---|---|",
    ]
    fitted_groups = scores["fit_calibrated"]["groups"]
    for group, d in scores["fit_default"]["groups"].items():
        c = fitted_groups.get(group)
        cal = f"{c['sim_mean']:+.4f} ± {c['sim_std']:.4f} | {c['ks']:.2f}" if c else "– | –"
        lines.append(
            f"| {group} | {d['real_n']} | {d['real_mean']:+.4f} ± {d['real_std']:.4f} | "
            f"{d['sim_mean']:+.4f} ± {d['sim_std']:.4f} | {d['ks']:.2f} | {cal} |"
        )
    return "\n".join(lines) + "\n"


def _plot(real: list, sim_default: list, sim_fitted: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tamiyo.producers.calibration import accuracy_curves

    curves = [(accuracy_curves(real), "real", "-"), (accuracy_curves(sim_default), "default host-sim", ":"),
              (accuracy_curves(sim_fitted), "calibrated host-sim", "--")]  # fmt: skip
    names = sorted(curves[0][0])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for data, label, style in curves:
            if name in data:
                ax.plot(range(1, data[name].size + 1), data[name], style, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("mean validation accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
