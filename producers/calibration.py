"""Calibrating host-sim against real training (issue 14): record transitions, compare, fit `SimParams`.

1. `record` runs episodes of an env (host-train: real host networks) under several controllers and keeps every
   step as a `Transition`: the action, the lifecycle stage of the slot it names, Δ validation accuracy, the
   reward and the parameters the seeds hold.
2. `discrepancy` compares two such recordings, controller by controller: the two-sample Kolmogorov-Smirnov
   statistic of Δ validation accuracy in each (action, stage) group that both have enough samples of, the
   RMSE between the mean validation-accuracy curves, and the gap between mean episode returns in units of the
   real returns' spread.  0 means indistinguishable by these statistics.
3. `fit` searches `SimParams` (random search, log-uniform around a start point; the start point is the first
   candidate, so the fit is never worse than it on the data it is fitted to) for the host-sim whose recording
   under the same controllers is closest to the real one.

Pure functions of their arguments and seeds (no files, no Kafka); `cli/calibrate_cmd.py` writes the file and
the report.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from tamiyo.producers import lifecycle
from tamiyo.producers.controllers import Controller, make_controller
from tamiyo.producers.evaluate import task_seeds
from tamiyo.producers.host_backend import HostConfig
from tamiyo.producers.host_env import HostEnv
from tamiyo.producers.host_sim import SimParams, make_host_sim

OPS = ("wait", "germinate", "advance", "cull", "lr_up", "lr_down")
SLOT_OPS = frozenset({1, 2, 3})  # the ops whose slot matters: germinate, advance, cull
MIN_GROUP = 8  # samples each recording needs in a group for its KS statistic to count
# The fitted fields and how far the search may move each (a factor around the start), with hard bounds.
FITTED: dict[str, tuple[float, float, float]] = {  # name -> (factor, lower bound, upper bound)
    "speed": (3.0, 0.02, 0.95),
    "noise_floor": (3.0, 0.0, 0.3),
    "spike_prob": (4.0, 0.0, 0.3),
    "shock": (3.0, 0.0, 0.6),
    "harmful_prob": (3.0, 0.0, 0.9),
    "readiness_rate": (3.0, 0.02, 0.95),
    "obs_noise": (3.0, 0.0, 0.05),
    "seed_gain": (3.0, 0.05, 3.0),
}


@dataclass(frozen=True)
class Transition:
    controller: str
    task_seed: int
    epoch: int
    op: str
    stage: str  # the named slot's stage before the step ("-" for ops without a slot)
    acc_before: float
    acc_after: float
    reward: float
    params_added: float

    @property
    def group(self) -> str:
        return f"{self.op}/{self.stage}"

    @property
    def delta_acc(self) -> float:
        return self.acc_after - self.acc_before


def transitions_to_rows(transitions: Sequence[Transition]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(t) for t in transitions]


def transitions_from_rows(rows: Sequence[dict[str, Any]]) -> list[Transition]:
    """Back from `transitions_to_rows` (a recording saved as JSON); KeyError/TypeError on a foreign row."""
    return [Transition(**row) for row in rows]


def stage_name(stage: int) -> str:
    return lifecycle.stage_name(stage).removeprefix("SEED_STAGE_").lower()


def record(
    env: HostEnv, controllers: Sequence[str], tasks: int, seed: int, progress: Callable[[str], None] | None = None
) -> list[Transition]:
    """Every step of one episode per (controller, task); task seeds derived from ``seed`` as in `evaluate`."""
    out: list[Transition] = []
    for name in controllers:
        for i, task in enumerate(task_seeds(seed, tasks)):
            out.extend(_episode(env, make_controller(name, seed=task), name, task))
            if progress is not None:
                progress(f"{name}: task {i + 1}/{tasks}")
    return out


def _episode(env: HostEnv, controller: Controller, name: str, task: int) -> list[Transition]:
    obs = env.reset(seed=task)
    controller.reset(task)
    info = env.info()
    out, done = [], False
    while not done:
        action = controller.act(obs, info)
        op, slot = int(action[0]), int(action[1])
        stage = stage_name(info["slots"][slot]["stage"]) if op in SLOT_OPS else "-"
        result = env.step(action)
        after = env.info()
        acc_before, acc_after = float(info["val_acc"]), float(after["val_acc"])
        reward, held = float(result.reward), float(after["added_params"])
        out.append(Transition(name, task, int(info["epoch"]), OPS[op], stage, acc_before, acc_after, reward, held))
        obs, info = result.observation, after
        done = result.terminated or result.truncated
    return out


def episode_returns(transitions: Sequence[Transition]) -> dict[str, np.ndarray]:
    """Controller -> the return of each of its episodes."""
    sums: dict[tuple[str, int], float] = defaultdict(float)
    for t in transitions:
        sums[(t.controller, t.task_seed)] += t.reward
    by_controller: dict[str, list[float]] = defaultdict(list)
    for (controller, _task), total in sums.items():
        by_controller[controller].append(total)
    return {c: np.array(v) for c, v in by_controller.items()}


def accuracy_curves(transitions: Sequence[Transition]) -> dict[str, np.ndarray]:
    """Controller -> mean validation accuracy after each epoch (over its episodes)."""
    by: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in transitions:
        by[t.controller][t.epoch].append(t.acc_after)
    return {c: np.array([np.mean(e[k]) for k in sorted(e)]) for c, e in by.items()}


def deltas_by_group(transitions: Sequence[Transition]) -> dict[str, dict[str, np.ndarray]]:
    """Controller -> (action/stage group -> Δ validation accuracy of each of its steps)."""
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in transitions:
        by[t.controller][t.group].append(t.delta_acc)
    return {c: {g: np.array(v) for g, v in groups.items()} for c, groups in by.items()}


def discrepancy(real: Sequence[Transition], sim: Sequence[Transition]) -> dict[str, Any]:
    """How far ``sim`` is from ``real`` (module docstring); ``total`` is what `fit` minimises."""
    real_d, sim_d = deltas_by_group(real), deltas_by_group(sim)
    real_c, sim_c = accuracy_curves(real), accuracy_curves(sim)
    real_r, sim_r = episode_returns(real), episode_returns(sim)
    groups: dict[str, dict[str, float]] = {}
    ks_values, curve_terms, return_terms = [], [], []
    for controller in sorted(real_d):
        for group, r in sorted(real_d[controller].items()):
            s = sim_d.get(controller, {}).get(group, np.zeros(0))
            if r.size < MIN_GROUP or s.size < MIN_GROUP:
                continue
            ks = float(stats.ks_2samp(r, s).statistic)
            ks_values.append(ks)
            groups[f"{controller}:{group}"] = {
                "ks": ks, "real_mean": float(r.mean()), "sim_mean": float(s.mean()),
                "real_std": float(r.std()), "sim_std": float(s.std()), "real_n": r.size, "sim_n": s.size,
            }  # fmt: skip
        if controller in sim_c:
            n = min(real_c[controller].size, sim_c[controller].size)
            curve_terms.append(float(np.sqrt(np.mean((real_c[controller][:n] - sim_c[controller][:n]) ** 2))))
        if controller in sim_r:
            spread = max(float(real_r[controller].std()), 1e-3)
            return_terms.append(abs(float(real_r[controller].mean() - sim_r[controller].mean())) / spread)
    mean_ks = float(np.mean(ks_values)) if ks_values else 1.0
    curve = float(np.mean(curve_terms)) if curve_terms else 1.0
    ret = float(np.mean(return_terms)) if return_terms else 1.0
    return {
        "total": mean_ks + curve / 0.05 * 0.5 + 0.5 * ret,  # ~1 each: KS, 5 points of accuracy, one spread
        "mean_ks": mean_ks,
        "curve_rmse": curve,
        "return_gap_in_spreads": ret,
        "groups": groups,
        "returns": {
            c: {"real": float(real_r[c].mean()), "sim": float(sim_r.get(c, np.full(1, math.nan)).mean())}
            for c in sorted(real_r)
        },
    }


def simulate(params: SimParams, controllers: Sequence[str], tasks: int, seed: int, **host_kw: Any) -> list[Transition]:
    """`record` of host-sim with ``params`` (``host_kw``: HostConfig fields)."""
    env = make_host_sim(seed=seed, config=HostConfig(**host_kw), params=params)
    return record(env, controllers, tasks, seed)


def candidates(start: SimParams, count: int, seed: int) -> list[SimParams]:
    """``start`` and ``count - 1`` random neighbours of it (each fitted field log-uniform within its factor)."""
    rng = np.random.default_rng(seed)
    out = [start]
    for _ in range(count - 1):
        changes: dict[str, Any] = {}
        for name, (factor, lo, hi) in FITTED.items():
            base = max(float(getattr(start, name)), 1e-4)
            changes[name] = float(np.clip(base * factor ** rng.uniform(-1.0, 1.0), lo, hi))
        out.append(dataclasses.replace(start, **changes))
    return out


def fit(
    real: Sequence[Transition],
    controllers: Sequence[str],
    tasks: int,
    count: int,
    seed: int,
    start: SimParams | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[SimParams, list[dict[str, Any]]]:
    """The candidate whose simulated recording is closest to ``real``, and every candidate's score."""
    scored = []
    for i, params in enumerate(candidates(start or SimParams(), count, seed)):
        score = discrepancy(real, simulate(params, controllers, tasks, seed))
        totals = {k: score[k] for k in ("total", "mean_ks", "curve_rmse", "return_gap_in_spreads")}
        scored.append({"params": dataclasses.asdict(params), **totals})
        if progress is not None:
            progress(f"candidate {i + 1}/{count}: discrepancy {score['total']:.3f}")
    best = min(range(len(scored)), key=lambda i: scored[i]["total"])
    return SimParams(**scored[best]["params"]), scored
