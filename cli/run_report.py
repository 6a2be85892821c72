"""A finished run's learning-curve plot and Markdown report, from its metrics.jsonl and evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report is written to files, never shown
import matplotlib.pyplot as plt
from matplotlib.axes import Axes


def load_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_learning_curve(metrics_path: Path, out_png: Path, title: str) -> Path:
    rows = load_metrics(metrics_path)
    actor_rows = [r for r in rows if r["source"].startswith("actor/") and "episode_return_mean" in r["metrics"]]
    learner_rows = [r for r in rows if r["source"] == "learner"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for source in sorted({r["source"] for r in actor_rows}):
        pts = [
            (r["metrics"].get("env_steps", 0), r["metrics"]["episode_return_mean"])
            for r in actor_rows
            if r["source"] == source
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=".", label=source)
    ax.set_xlabel("env frames (per actor)")
    ax.set_ylabel("mean episode return (last 100)")
    ax.set_title("actors: episode return")
    if actor_rows:
        ax.legend(fontsize=7)
    _plot_learner(
        axes[1], learner_rows, ("policy_loss", "baseline_loss", "value_loss", "entropy"), "learner: losses and entropy"
    )
    _plot_learner(
        axes[2],
        learner_rows,
        ("policy_lag_mean", "rho_mean", "approx_kl", "clip_fraction", "is_weight_mean"),
        "off-policy diagnostics",
    )
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def _plot_learner(ax: Axes, learner_rows: list[dict[str, Any]], keys: tuple[str, ...], title: str) -> None:
    """One line per learner metric in ``keys``, against learner updates."""
    for key in keys:
        pts = [
            (r["metrics"]["updates"], r["metrics"][key])
            for r in learner_rows
            if key in r["metrics"] and "updates" in r["metrics"]
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key)
    ax.set_xlabel("learner updates")
    ax.set_title(title)
    ax.legend(fontsize=7)


def _fmt_ci(result: dict[str, Any]) -> str:
    lo, hi = result["return_ci95"]
    return f"{result['mean_return']:.4f} [{lo:.4f}, {hi:.4f}]"


def _restarts(restarts: list[dict[str, Any]]) -> str:
    if not restarts:
        return "none"
    return "; ".join(f"{r['service']} (exit code {r['exit_code']}, at {r['at_s']} s)" for r in restarts)


def write_report(out_dir: Path, config: dict[str, Any], summary: dict[str, Any], evaluation: dict[str, Any]) -> Path:
    """runs/<id>/report.md; with the learning proof's section last when ``summary`` has its "returns"."""
    broker = "local broker started for this run" if summary.get("broker_started") else "given"
    lines = [
        f"# Tamiyo run `{config['run_id']}`",
        "",
        "## What ran",
        "",
        f"- algorithm **{config['algo']}** on env **{config['env']}**, {config['actors']} actor process(es) x "
        f"{config['envs_per_actor']} envs, unrolls of {config['unroll_length']}, "
        f"batches of {config['batch_size']} trajectories",
        f"- Kafka: `{summary['bootstrap']}` ({broker}), topics `tamiyo.{config['run_id']}.*`",
        f"- stopped because: {summary['stop_reason']}",
        f"- service restarts: {_restarts(summary.get('restarts', []))}",
        "",
        "## Throughput",
        "",
        "| learner updates | env frames | wall time (s) | frames/s | batches dead-lettered | records dead-lettered |",
        "|---|---|---|---|---|---|",
        f"| {summary['updates']} | {summary['frames']} | {summary['wall_s']:.1f} | {summary['frames_per_s']:.1f} | "
        f"{summary.get('rejected_batches', 0)} | {summary.get('deadlettered', 0)} |",
        "",
    ]
    if evaluation:
        lines += ["## Final evaluation (held-out tasks)", ""]
        if "controllers" in evaluation:
            lines += [
                f"{evaluation['tasks']} tasks, seed {evaluation['seed']}; mean return with 95% confidence interval.",
                "",
                "| controller | mean return [95% CI] | final val acc | params added |",
                "|---|---|---|---|",
            ]
            for name, r in evaluation["controllers"].items():
                lines.append(
                    f"| {name} | {_fmt_ci(r)} | {r['mean_final_val_acc']:.4f} | {r['mean_params_added']:.0f} |"
                )
            verdict = evaluation.get("verdict")
            if verdict:
                lines += ["", f"**{verdict}**"]
        else:
            lines += [f"- mean return over {evaluation['episodes']} greedy episodes: {evaluation['mean_return']:.1f}"]
        lines.append("")
    lines += [
        "## Files",
        "",
        "- `config.json`: the run's settings",
        "- `metrics.jsonl`: every telemetry packet of the run (actors, replay, learner)",
        "- `learning_curve.png`: returns, losses and off-policy diagnostics",
        "- `policy.safetensors` + `policy.json`: the final policy "
        "(`tamiyo eval --controller runs/<id>/policy.safetensors`)",
        "- `logs/`: each service's log",
        "",
        "![learning curve](learning_curve.png)",
        "",
    ]
    if "returns" in summary:
        lines += _returns_section(summary["returns"])
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _returns_section(r: dict[str, Any]) -> list[str]:
    """The learning proof: `EpisodeReturns.summary()` (cli/train_returns.py)."""
    reached = (
        f"first reached at **{r['reached_at_frames']:,} env frames** ({r['reached_after_s']} s into the run)"
        if r["reached_at_frames"] is not None
        else "**not reached**"
    )
    return [
        f"## Episode returns ({r['window']}-episode window, from the trajectories topic)",
        "",
        f"- target {r['target']:g}: {reached}",
        f"- episodes: {r['episodes']}, frames published: {r['frames_published']:,}",
        f"- best window mean: {r['best_window_mean']}, final window mean: {r['final_window_mean']}",
        "",
    ]
