"""Smoke test of bench/peers.py (Tamiyo PPO vs Stable-Baselines3 PPO): a tiny budget, in-process only.

Stable-Baselines3 is a bench-only extra (`pip install -e '.[bench]'`): without it the test is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_peers_prints_one_json_object(tmp_path: Path) -> None:
    png = tmp_path / "peers.png"
    cmd = [sys.executable, str(ROOT / "bench" / "peers.py"), "--seeds", "1", "--budget-frames", "2000", "--no-kafka"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, "--png", str(png)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    result = json.loads(lines[0])

    assert {"tamiyo_over_sb3_frames_per_s", "summary", "runs", "hyperparameters", "png"} <= result.keys()
    assert result["kafka"] is False and result["budget_frames"] == 2000
    assert result["tamiyo_over_sb3_frames_per_s"] > 0
    assert set(result["summary"]) == {"sb3", "tamiyo"}
    for impl in ("sb3", "tamiyo"):
        assert {"frames_per_s", "frames_to_threshold", "reached"} <= result["summary"][impl].keys()
    assert [r["impl"] for r in result["runs"]] == ["sb3", "tamiyo"]
    for run in result["runs"]:
        assert {"seed", "frames", "wall_s", "frames_per_s", "reached_at", "curve"} <= run.keys()
        assert 2000 <= run["frames"] <= 2000 + 256  # the budget, rounded up to one PPO batch at most
        assert run["frames_per_s"] > 0 and run["curve"]
    hp = result["hyperparameters"]["sb3"]
    assert (hp["n_envs"], hp["n_steps"], hp["batch_size"], hp["n_epochs"]) == (8, 32, 256, 20)
    assert png.exists() and png.with_suffix(".json").exists()
