"""What a finished `tamiyo train` run writes to runs/<id>/ besides its logs and metrics.jsonl: the final
policy (policy.safetensors + policy.json), returns.json, evaluation.json, learning_curve.png, report.md."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tamiyo.cli.run_report import plot_learning_curve, write_report
from tamiyo.cli.train_config import TrainConfig
from tamiyo.cli.train_returns import EpisodeReturns
from tamiyo.contracts.proto import leyline_pb2 as pb


def write_policy(snapshot: pb.PolicySnapshot, out_dir: Path) -> Path:
    """The snapshot's weights as policy.safetensors and its config beside them as policy.json."""
    path = out_dir / "policy.safetensors"
    path.write_bytes(snapshot.weights)
    path.with_suffix(".json").write_text(snapshot.config_json)
    return path


def write_returns(out_dir: Path, returns: EpisodeReturns) -> None:
    """returns.json: the learning proof's summary and its curve of (env frames, windowed mean)."""
    (out_dir / "returns.json").write_text(
        json.dumps(returns.summary() | {"curve": [[f, round(m, 3)] for f, m in returns.curve]})
    )


def evaluate_policy(config: TrainConfig, policy_path: Path) -> dict[str, Any]:
    """Gym envs: the mean return of greedy episodes.  Host envs: the policy, the heuristic and no controller on
    the same held-out tasks, with a verdict from their 95% confidence intervals."""
    c = config
    if c.torch_threads:
        import torch

        torch.set_num_threads(c.torch_threads)
    if c.env.startswith("gym:"):
        from tamiyo.producers.gym_eval import evaluate_gym_policy

        if c.eval_episodes < 1:
            return {}
        return evaluate_gym_policy(policy_path, c.env, episodes=c.eval_episodes, seed=c.seed + 10_000)
    from tamiyo.producers.evaluate import evaluate
    from tamiyo.producers.policy_controller import PolicyController

    results = {
        "policy": evaluate(PolicyController.from_file(policy_path), c.env, c.eval_tasks, c.seed + 10_000),
        "heuristic": evaluate("heuristic", c.env, c.eval_tasks, c.seed + 10_000),
        "none": evaluate("none", c.env, c.eval_tasks, c.seed + 10_000),
    }
    for r in results.values():
        r.pop("per_task", None)
    p, h = results["policy"], results["heuristic"]
    if p["return_ci95"][0] > h["return_ci95"][1]:
        verdict = "the trained policy beats the heuristic (confidence intervals do not overlap)"
    elif p["mean_return"] > h["mean_return"]:
        verdict = "the trained policy's mean return is above the heuristic's, within the confidence intervals"
    else:
        verdict = "the trained policy does not beat the heuristic in this run"
    return {"tasks": c.eval_tasks, "seed": c.seed + 10_000, "controllers": results, "verdict": verdict}


def write_run_report(out_dir: Path, config: TrainConfig, summary: dict[str, Any], evaluation: dict[str, Any]) -> Path:
    """evaluation.json, learning_curve.png and report.md; returns the report's path."""
    (out_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
    plot_learning_curve(out_dir / "metrics.jsonl", out_dir / "learning_curve.png",
                        f"{config.algo} on {config.env} ({config.run_id})")  # fmt: skip
    return write_report(out_dir, asdict(config), summary, evaluation)
