"""Learning proof on CartPole-v1 over several fixed seeds; prints one JSON object and saves a PNG.

    python bench/learning.py --algo ppo --seeds 3      # each seed: 20-ep mean >= 450 within 200k steps
    python bench/learning.py --algo impala --seeds 3   # each seed: >= 400 within 500k steps, lagging actors

Seeds are 1..N.  By default a run stops once its threshold is reached; ``--full``
trains for the whole budget to draw the complete curve.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tamiyo.contracts.env_schemas import env_schema
from tamiyo.learner.inprocess import LearningCurve, train_impala, train_ppo
from tamiyo.learner.presets import CARTPOLE_IMPALA, CARTPOLE_MODEL, CARTPOLE_PPO
from tamiyo.producers.experience import env_collectors

ENV = "gym:CartPole-v1"

GOALS = {"ppo": (450.0, 200_000), "impala": (400.0, 500_000)}


def run(algo: str, seed: int, full: bool, device: str, refresh_every: int) -> LearningCurve:
    threshold, budget = GOALS[algo]
    if algo == "ppo":
        return train_ppo(
            env_schema(ENV),
            env_collectors(ENV, seed),
            CARTPOLE_PPO,
            seed,
            CARTPOLE_MODEL,
            threshold,
            stop_at_threshold=not full,
            device=device,
        )
    return train_impala(
        env_schema(ENV),
        env_collectors(ENV, seed),
        CARTPOLE_IMPALA,
        seed,
        budget,
        refresh_every,
        CARTPOLE_MODEL,
        threshold,
        stop_at_threshold=not full,
        device=device,
    )


def save_png(curves: list[LearningCurve], algo: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threshold, budget = GOALS[algo]
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in curves:
        if c.points:
            steps, means = zip(*c.points, strict=True)
            ax.plot(steps, means, label=f"seed {c.seed}")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.axvline(budget, color="r", ls=":", lw=1, label="step budget")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return (last 20 episodes)")
    ax.set_title(f"{algo.upper()} on CartPole-v1 (TamiyoGNN, one-node graphs)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--algo", choices=sorted(GOALS), required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="train the whole budget, not just to the threshold")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--refresh-every", type=int, default=4, help="IMPALA: actor weights refresh period")
    parser.add_argument("--png", type=Path, default=None, help="default runs/bench/learning_<algo>.png")
    parser.add_argument("--points", type=int, default=200, help="curve points per seed in the JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    curves = [run(args.algo, seed, args.full, args.device, args.refresh_every) for seed in range(1, args.seeds + 1)]
    threshold, budget = GOALS[args.algo]
    png = args.png or Path("runs/bench") / f"learning_{args.algo}.png"
    save_png(curves, args.algo, png)

    seeds = []
    for c in curves:
        d = c.to_dict()
        stride = max(1, len(d["curve"]) // args.points)
        d["curve"] = d["curve"][::stride]
        d["reached"] = c.reached_at is not None and c.reached_at <= budget
        d["policy_lag_mean"] = c.last_metrics.get("policy_lag_mean_overall")
        seeds.append(d)
    reached = [c.reached_at for c in curves]
    print(
        json.dumps(
            {
                "algo": args.algo,
                "env_id": "gym:CartPole-v1",
                "threshold": threshold,
                "window": 20,
                "step_budget": budget,
                "all_seeds_reached": all(s["reached"] for s in seeds),
                "steps_to_threshold": reached,
                "wall_s_per_seed": [round(c.wall_s, 1) for c in curves],
                "total_wall_s": round(time.perf_counter() - start, 1),
                "device": args.device,
                "png": str(png),
                "seeds": seeds,
            }
        )
    )


if __name__ == "__main__":
    main()
