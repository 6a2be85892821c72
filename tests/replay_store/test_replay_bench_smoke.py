"""bench/replay.py still runs and prints one JSON object with the agreed keys (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "replay.py"


def test_bench_prints_one_json_object() -> None:
    args = ["--capacity", "2000", "--iterations", "5", "--rounds", "1", "--pool", "16", "--no-torchrl"]
    command = [sys.executable, str(BENCH), *args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    [line] = out.stdout.strip().splitlines()
    result = json.loads(line)
    for key in ("ops_per_s", "torchrl_ops_per_s", "ratio_vs_torchrl", "bytes_per_item", "compression_ratio"):
        assert key in result
    assert result["ops_per_s"] > 0 and 0 < result["compression_ratio"] <= 0.3
