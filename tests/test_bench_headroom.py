"""bench/headroom.py on the surrogate, small: the grid is searched on training tasks only, the best schedule is
the grid's best, and the held-out comparison is paired on the same tasks (the full host-train run takes minutes
and is not a test)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tamiyo.producers.controllers import TunedController
from tamiyo.producers.evaluate import evaluate, paired_difference

spec = importlib.util.spec_from_file_location("headroom", Path(__file__).resolve().parents[1] / "bench" / "headroom.py")
assert spec is not None and spec.loader is not None
headroom = importlib.util.module_from_spec(spec)
spec.loader.exec_module(headroom)


def test_headroom_searches_on_training_tasks_and_pairs_on_held_out_ones(tmp_path):
    png, out = tmp_path / "h.png", tmp_path / "h.json"
    argv = ["--env", "host-sim", "--train-tasks", "3", "--eval-tasks", "4", "--grid", "3"]
    result = headroom.main([*argv, "--png", str(png), "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result)) and png.stat().st_size > 0
    assert len(result["grid"]) == 3
    best = max(result["grid"], key=lambda r: r["mean_return"])
    assert result["best"] == {k: best[k] for k in headroom.KNOBS}
    # The grid's numbers are training-split returns of exactly that schedule.
    knobs = {k: result["grid"][0][k] for k in headroom.KNOBS}
    again = evaluate(TunedController(**knobs), "host-sim", 3, 7, split="train")
    assert again["mean_return"] == pytest.approx(result["grid"][0]["mean_return"])
    # Held out: another split and another seed, paired by task.
    none, heuristic = evaluate("none", "host-sim", 4, 8), evaluate("heuristic", "host-sim", 4, 8)
    assert result["held_out"]["none"]["mean_return"] == pytest.approx(none["mean_return"])
    mean, lo, hi = paired_difference(heuristic, none)
    assert result["paired"]["heuristic_minus_none"]["mean"] == pytest.approx(mean)
    assert result["paired"]["heuristic_minus_none"]["ci95"] == pytest.approx([lo, hi])


def test_a_policy_is_paired_on_the_same_held_out_tasks(tmp_path):
    import torch

    import tamiyo
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.policy.model import ModelConfig, TamiyoGNN
    from tamiyo.policy.snapshot import encode_snapshot, write_snapshot

    torch.manual_seed(0)
    weights, _ = write_snapshot(encode_snapshot(TamiyoGNN(env_schema("host-sim"), ModelConfig(hidden=8)), 1), tmp_path)
    argv = ["--env", "host-sim", "--train-tasks", "2", "--eval-tasks", "3", "--grid", "1", "--policy", str(weights)]
    result = headroom.main([*argv, "--png", str(tmp_path / "h.png")])
    policy = tamiyo.evaluate(str(weights), env="host-sim", tasks=3, seed=8)
    none = evaluate("none", "host-sim", 3, 8)
    assert result["held_out"]["policy"]["mean_return"] == pytest.approx(policy["mean_return"])
    assert result["paired"]["policy_minus_none"]["mean"] == pytest.approx(paired_difference(policy, none)[0])
    assert {"policy_minus_heuristic", "policy_minus_tuned"} <= set(result["paired"])
