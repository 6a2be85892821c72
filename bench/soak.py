"""Soak: does any service leak?  One JSON object (and a PNG of RSS over time).

    python bench/soak.py [--minutes 10] [--preset host-sim] [--warmup-minutes 2] [--png soak.png]

Runs a real `tamiyo train` (local broker; actors + replay + learner) for ``--minutes``, samples every
service's resident set size (VmRSS from /proc, by the pids the run writes to runs/<id>/pids.json) every
``--every`` seconds, and prints per service: the RSS at the end of the warm-up and at the end, and the
least-squares slope after the warm-up in MiB per minute (goal: at most 1 MiB/min, as issue 12 asks),
plus the run's dead letters and restarts.  A restarted service's samples restart its series (a new pid).
Not a test: it takes minutes and its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL_MIB_PER_MIN = 1.0


def rss_mib(pid: int) -> float | None:
    """The process's resident set size in MiB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def slope_per_minute(samples: list[tuple[float, float]], warmup_s: float) -> float | None:
    """Least-squares slope (value per minute) of the (seconds, value) samples after ``warmup_s``;
    None with fewer than three samples there."""
    after = [(t, v) for t, v in samples if t >= warmup_s]
    if len(after) < 3:
        return None
    n = len(after)
    mean_t = sum(t for t, _ in after) / n
    mean_v = sum(v for _, v in after) / n
    var = sum((t - mean_t) ** 2 for t, _ in after)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in after)
    return cov / var * 60.0


def summarise(series: dict[str, list[tuple[float, float]]], warmup_s: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, samples in sorted(series.items()):
        after = [v for t, v in samples if t >= warmup_s]
        slope = slope_per_minute(samples, warmup_s)
        out[name] = {
            "samples": len(samples),
            "rss_mib_after_warmup": round(after[0], 1) if after else None,
            "rss_mib_end": round(samples[-1][1], 1) if samples else None,
            "slope_mib_per_min": None if slope is None else round(slope, 3),
            "within_goal": None if slope is None else slope <= GOAL_MIB_PER_MIN,
        }
    return out


def _read_pids(path: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads(path.read_text()).items() if int(v) > 0}
    except (OSError, ValueError):
        return {}


def plot(series: dict[str, list[tuple[float, float]]], warmup_s: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, samples in sorted(series.items()):
        ax.plot([t / 60 for t, _ in samples], [v for _, v in samples], label=name)
    ax.axvline(warmup_s / 60, color="grey", linestyle="--", linewidth=1, label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("tamiyo soak: resident memory per service")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--warmup-minutes", type=float, default=2.0)
    p.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--preset", default="host-sim")
    p.add_argument("--png", type=Path, default=None, help="RSS over time (default: soak.png in the run dir)")
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="tamiyo-soak-"))
    run_id = time.strftime("soak-%Y%m%d-%H%M%S")
    cmd = [sys.executable, "-m", "tamiyo.cli.main", "train", "--preset", args.preset, "--minutes", str(args.minutes),
           "--out", str(out), "--run-id", run_id, "--eval-tasks", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pids_path = out / run_id / "pids.json"
    series: dict[str, list[tuple[float, float]]] = {}
    started = time.monotonic()
    last_pid: dict[str, int] = {}
    while proc.poll() is None:
        now = time.monotonic() - started
        for name, pid in _read_pids(pids_path).items():
            if name == "broker":
                name = "broker (JVM)"
            rss = rss_mib(pid)
            if rss is None:
                continue
            key = name if last_pid.setdefault(name, pid) == pid else f"{name} (pid {pid})"  # a restart
            series.setdefault(key, []).append((now, rss))
        print(f"\r{now / 60:5.1f} min  " + "  ".join(f"{k}={v[-1][1]:.0f}MiB" for k, v in series.items()),
              end="", file=sys.stderr, flush=True)  # fmt: skip
        time.sleep(args.every)
    print(file=sys.stderr)
    stdout = proc.stdout.read() if proc.stdout else ""
    summary_line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")), "{}")
    run = json.loads(summary_line)
    warmup_s = args.warmup_minutes * 60
    png = args.png or out / run_id / "soak.png"
    if series:
        plot(series, warmup_s, png)
    result = {
        "bench": "soak",
        "preset": args.preset,
        "minutes": args.minutes,
        "warmup_minutes": args.warmup_minutes,
        "goal_mib_per_min": GOAL_MIB_PER_MIN,
        "services": summarise(series, warmup_s),
        "frames": run.get("frames"),
        "updates": run.get("updates"),
        "deadlettered": run.get("deadlettered"),
        "restarts": run.get("restarts"),
        "exit_code": proc.returncode,
        "run_dir": str(out / run_id),
        "png": str(png) if series else None,
    }
    print(json.dumps(result))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
