"""bench/learning_over_kafka.py --proof sim-to-real, its bookkeeping: the fine-tune starts from the host-sim
run's policy, and every comparison is paired on the same held-out tasks.  The training runs are stubbed
(the real ones take ~35-40 minutes a seed through Kafka) and the evaluations run on the surrogate, small."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from tamiyo.producers.controllers import TunedController
from tamiyo.producers.evaluate import evaluate, paired_difference

spec = importlib.util.spec_from_file_location(
    "learning_over_kafka", Path(__file__).resolve().parents[1] / "bench" / "learning_over_kafka.py"
)
assert spec is not None and spec.loader is not None
lok = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lok)

# The stub runs' "policies" are baseline controllers, so that the evaluations are real and cheap.
POLICIES = {"/runs/sim/policy.safetensors": "random", "/runs/real/policy.safetensors": "heuristic"}
SAMPLED = {"/runs/real/policy.safetensors": "none"}  # --sample: another controller, to tell the evaluations apart


def stub_runs(monkeypatch) -> list:
    calls = []

    def fake_train(proof, seed, out, bootstrap, minutes, extra, budget_override=None):
        calls.append((proof, seed, minutes, list(extra), budget_override))
        stage = "sim" if proof == "impala-host-sim" else "real"
        return {"seed": seed, "wall_s": 1.0, "frames": budget_override, "policy": f"/runs/{stage}/policy.safetensors"}

    def fake_evaluate(controller, tasks, seed, env="host-sim", sample=False):
        assert env == "host-train"
        name = SAMPLED.get(controller) if sample else None
        return evaluate(name or POLICIES.get(controller, controller), "host-sim", tasks, seed)

    def fake_tuned(tasks, seed):
        return evaluate(TunedController(train_epochs=2, blueprint="smallest"), "host-sim", tasks, seed)

    monkeypatch.setattr(lok, "train", fake_train)
    monkeypatch.setattr(lok, "evaluate", fake_evaluate)
    monkeypatch.setattr(lok, "evaluate_tuned", fake_tuned)
    return calls


def sim_to_real_args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{
        "sim_frames": 1000, "real_frames": 500, "real_lr": 3e-4, "minutes": 2.0, "train_args": ["--x"], "tasks": 6,
        "eval_seed": 11, "sim_env": "host-sim:calibration/host_sim.json", "sim_policy": [], "first_seed": 3,
        **kw})  # fmt: skip


def test_sim_to_real_fine_tunes_from_the_sim_policy_and_pairs_every_comparison(monkeypatch) -> None:
    calls = stub_runs(monkeypatch)
    args = sim_to_real_args()
    r = lok.sim_to_real(3, Path("/runs"), "127.0.0.1:1", args)

    assert calls == [
        ("impala-host-sim", 3, None, ["--env", "host-sim:calibration/host_sim.json"], 1000),
        ("sim-to-real", 3, 2.0, ["--init-from", "/runs/sim/policy.safetensors", "--lr", "0.0003", "--x"], 500),
    ]
    ev = r["eval"]
    real, sim = evaluate("heuristic", "host-sim", 6, 11), evaluate("random", "host-sim", 6, 11)
    none = evaluate("none", "host-sim", 6, 11)
    for name, (a, b) in {"sim_real_minus_none": (real, none), "sim_real_minus_sim_only": (real, sim),
                         "sim_only_minus_none": (sim, none),
                         "sim_real_sampled_minus_sim_only_sampled": (none, sim)}.items():  # fmt: skip
        mean, lo, hi = paired_difference(a, b)
        assert ev[name]["mean"] == pytest.approx(mean) and ev[name]["ci95"] == pytest.approx([lo, hi])
        assert ev[name]["tasks"] == 6
    assert ev["sim_real"]["mean_return"] == pytest.approx(real["mean_return"], abs=1e-4)
    headroom = ev["tuned_minus_none"]["mean"]
    assert ev["share_of_tuned_headroom"] == pytest.approx(ev["sim_real_minus_none"]["mean"] / headroom)
    want = ev["sim_real_minus_heuristic"]["ci95"][0] > 0 and ev["sim_real_minus_none"]["ci95"][0] > 0
    assert r["passed"] == want and r["wall_s"] == 2.0
    assert r["sim_env"] == "host-sim:calibration/host_sim.json"


def test_sim_to_real_can_fine_tune_the_policies_of_an_earlier_pre_training(monkeypatch) -> None:
    """--sim-policy, once per seed: no pre-training run; seed 4's fine-tune starts from the second policy."""
    calls = stub_runs(monkeypatch)
    monkeypatch.setitem(POLICIES, "/old/s4/policy.safetensors", "random")
    args = sim_to_real_args(sim_policy=["/old/s3/policy.safetensors", "/old/s4/policy.safetensors"])
    r = lok.sim_to_real(4, Path("/runs"), "127.0.0.1:1", args)

    extra = ["--init-from", "/old/s4/policy.safetensors", "--lr", "0.0003", "--x"]
    assert calls == [("sim-to-real", 4, 2.0, extra, 500)]
    assert r["sim"]["reused"] and r["sim"]["policy"] == "/old/s4/policy.safetensors" and r["sim_env"] is None
    sim, none = evaluate("random", "host-sim", 6, 11), evaluate("none", "host-sim", 6, 11)
    _mean, lo, hi = paired_difference(sim, none)
    assert r["eval"]["sim_only_minus_none"]["ci95"] == pytest.approx([lo, hi])
