"""bench/soak.py's arithmetic (the soak itself takes minutes and is not a test): RSS slopes after the
warm-up against numpy's least-squares fit, and /proc reading of a live and a gone process."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location("soak", Path(__file__).resolve().parents[1] / "bench" / "soak.py")
assert spec is not None and spec.loader is not None
soak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(soak)


def test_the_slope_ignores_the_warm_up_and_is_per_minute():
    # 100 MiB during the warm-up, then +0.5 MiB every 30 s = 1 MiB/min, with symmetric noise.
    samples = [(float(t), 100.0) for t in range(0, 120, 30)]
    samples += [(120.0 + 30 * i, 200.0 + 0.5 * i + (0.2 if i % 2 else -0.2)) for i in range(10)]
    after = np.array([(t, v) for t, v in samples if t >= 120])
    want = np.polyfit(after[:, 0], after[:, 1], 1)[0] * 60  # numpy's least squares, per minute
    assert soak.slope_per_minute(samples, warmup_s=120) == pytest.approx(want)
    assert want == pytest.approx(1.0, abs=0.05)
    assert soak.slope_per_minute(samples[:5], warmup_s=120) is None  # too few samples after the warm-up


def test_summary_marks_what_is_within_the_goal():
    flat = [(float(t), 300.0) for t in range(0, 600, 10)]
    leaking = [(float(t), 300.0 + t / 10) for t in range(0, 600, 10)]  # 6 MiB/min
    got = soak.summarise({"actor-0": flat, "learner": leaking}, warmup_s=120)
    assert got["actor-0"]["within_goal"] is True and got["actor-0"]["slope_mib_per_min"] == 0.0
    assert got["learner"]["within_goal"] is False and got["learner"]["slope_mib_per_min"] == pytest.approx(6.0)
    assert got["learner"]["rss_mib_after_warmup"] == 312.0 and got["learner"]["rss_mib_end"] == 359.0


def test_rss_of_this_process_and_of_none():
    assert soak.rss_mib(os.getpid()) > 1.0
    assert soak.rss_mib(2**31 - 1) is None
