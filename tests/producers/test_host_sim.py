"""host-sim: the surrogate must rank the baselines sensibly and leave headroom for learning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tamiyo.producers.controllers import HeuristicController, TunedController, make_controller
from tamiyo.producers.evaluate import evaluate
from tamiyo.producers.host_sim import make_host_sim

TASKS = 120


@pytest.fixture(scope="module")
def results() -> dict[str, np.ndarray]:
    """Per-task returns of each baseline on the same held-out tasks (paired comparisons)."""
    out = {}
    for name in ("none", "random", "heuristic", "tuned"):
        report = evaluate(name, "host-sim", tasks=TASKS, seed=2024)
        out[name] = np.array([t["return"] for t in report["per_task"]])
    return out


def _paired_margin(better: np.ndarray, worse: np.ndarray) -> tuple[float, float]:
    diff = better - worse
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))


@pytest.mark.parametrize("worse", ["none", "random"])
def test_heuristic_beats_doing_nothing_and_random(results: dict[str, np.ndarray], worse: str) -> None:
    mean, se = _paired_margin(results["heuristic"], results[worse])
    assert mean > 3 * se, f"heuristic - {worse} = {mean:.4f} ± {se:.4f}"


def test_there_is_headroom_above_the_heuristic(results: dict[str, np.ndarray]) -> None:
    """An observation-driven schedule beats the heuristic clearly: learning has something to find."""
    mean, se = _paired_margin(results["tuned"], results["heuristic"])
    assert mean > 0.02 and mean > 4 * se, f"tuned - heuristic = {mean:.4f} ± {se:.4f}"


def test_seeds_can_hurt_and_culling_them_is_possible() -> None:
    """Across tasks some planted seeds have negative quality: the blend-gain signal goes negative."""
    env = make_host_sim(seed=0)
    negatives = 0
    for task in range(40):
        env.reset(seed=task)
        env.step(np.array([1, 0, 0]))  # germinate
        env.step(np.array([2, 0, 0]))  # train
        for _ in range(3):
            env.step(np.array([0, 0, 0]))
        negatives += env.info()["slots"][0]["blend_gain"] < -0.1
    assert 0 < negatives < 40


def test_high_learning_rate_is_unstable() -> None:
    """LR_UP to the bound makes accuracy drops (spikes) far more frequent than at the default LR."""

    def drops(lr_ups: int) -> int:
        env = make_host_sim(seed=1)
        count = 0
        for task in range(60):
            env.reset(seed=task)
            for _ in range(lr_ups):
                env.step(np.array([4, 0, 0]))
            prev = env.info()["val_acc"]
            for _ in range(30 - lr_ups):
                acc = env.step(np.array([0, 0, 0])).info["val_acc"]
                count += acc < prev - 0.02
                prev = acc
        return count

    assert drops(3) > 2 * drops(0)


def test_evaluate_report_is_json_and_deterministic() -> None:
    a = evaluate("heuristic", "host-sim", tasks=5, seed=3)
    b = evaluate(HeuristicController(), "host-sim", tasks=5, seed=3)
    json.dumps(a)
    for key in ("mean_return", "return_ci95", "mean_final_val_acc", "mean_params_added", "per_task"):
        assert key in a
    assert len(a["per_task"]) == 5
    assert [t["return"] for t in a["per_task"]] == [t["return"] for t in b["per_task"]]
    lo, hi = a["return_ci95"]
    assert lo <= a["mean_return"] <= hi
    assert a["split"] == "eval"
    train_split = evaluate("heuristic", "host-sim", tasks=5, seed=3, split="train")
    assert [t["return"] for t in train_split["per_task"]] != [t["return"] for t in a["per_task"]]


def test_tuned_controller_is_registered() -> None:
    assert isinstance(make_controller("tuned"), TunedController)


def test_confidence_interval_uses_student_t() -> None:
    from tamiyo.producers.evaluate import confidence_interval, t_critical_95

    for dof, expected in [(1, 12.706), (4, 2.776), (25, 2.0595), (60, 2.0003), (1000, 1.9623)]:
        assert t_critical_95(dof) == pytest.approx(expected, abs=1e-3)
    lo, hi = confidence_interval(np.array([1.0, 2.0, 3.0]))
    assert (lo, hi) == pytest.approx((2.0 - 4.303 / np.sqrt(3), 2.0 + 4.303 / np.sqrt(3)), abs=1e-3)
    assert confidence_interval(np.array([0.5])) == (0.5, 0.5)


def test_paired_difference_is_the_interval_of_per_task_differences_and_refuses_unpaired_tasks() -> None:
    from tamiyo.producers.evaluate import confidence_interval, paired_difference

    def result(returns: list[float], seeds: list[int]) -> dict:
        return {"per_task": [{"task_seed": s, "return": r} for s, r in zip(seeds, returns, strict=True)]}

    a, b = result([0.5, 0.7, 0.4, 0.9], [1, 2, 3, 4]), result([0.45, 0.6, 0.42, 0.8], [1, 2, 3, 4])
    diff = np.array([0.05, 0.1, -0.02, 0.1])
    mean, lo, hi = paired_difference(a, b)
    assert mean == pytest.approx(diff.mean()) and (lo, hi) == pytest.approx(confidence_interval(diff))
    with pytest.raises(ValueError, match="same tasks"):
        paired_difference(a, result([0.45, 0.6, 0.42, 0.8], [1, 2, 4, 3]))


@pytest.mark.slow
def test_lookahead_oracle_bounds_the_tuned_schedule_from_above() -> None:
    """The privileged oracle (foresight of the noise) shows how much is left above `tuned`."""
    from tamiyo.producers.controllers import LookaheadOracle
    from tamiyo.producers.evaluate import run_episode

    env = make_host_sim(seed=5)
    seeds = list(range(15))
    tuned = np.array([run_episode(env, TunedController(), s)["return"] for s in seeds])
    oracle = np.array([run_episode(env, LookaheadOracle(env), s)["return"] for s in seeds])
    assert (oracle - tuned).mean() > 0.01
