"""Evaluate a controller on held-out tasks: what `tamiyo eval` prints (a JSON-able dict)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from scipy import stats

from tamiyo.contracts.env_schemas import PAIRED_HOST_TRAIN, is_host_env
from tamiyo.producers.controllers import Controller, make_controller
from tamiyo.producers.envs import HOST_ENVS, make_env
from tamiyo.producers.host_env import HostEnv


def t_critical_95(dof: int) -> float:
    """The two-sided 95% Student-t critical value (scipy.stats; it replaced a hand-written expansion)."""
    if dof < 1:
        raise ValueError("need at least one degree of freedom")
    return float(stats.t.ppf(0.975, dof))


def confidence_interval(values: np.ndarray) -> tuple[float, float]:
    """Student-t interval of the mean; degenerate (mean, mean) with fewer than two values."""
    mean = float(np.mean(values))
    if values.size < 2:
        return mean, mean
    half = t_critical_95(values.size - 1) * float(np.std(values, ddof=1)) / math.sqrt(values.size)
    return mean - half, mean + half


def paired_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, float]:
    """Mean of a - b over the same tasks, with its 95% Student-t interval, from two `evaluate` results
    (or `tamiyo eval` JSON).  Pairing by task removes the task-to-task variance both controllers share."""
    seeds_a, seeds_b = [t["task_seed"] for t in a["per_task"]], [t["task_seed"] for t in b["per_task"]]
    if seeds_a != seeds_b:
        raise ValueError("paired_difference needs both controllers evaluated on the same tasks")
    diff = np.array([x["return"] - y["return"] for x, y in zip(a["per_task"], b["per_task"], strict=True)])
    lo, hi = confidence_interval(diff)
    return float(diff.mean()), lo, hi


def task_seeds(seed: int, tasks: int) -> list[int]:
    """The task seeds of an evaluation: ``tasks`` of them, derived from ``seed`` (the same seed, the same tasks)."""
    return [int(x) for x in np.random.SeedSequence(seed).generate_state(tasks)]


def run_episode(env: HostEnv, controller: Controller, task_seed: int) -> dict[str, Any]:
    obs = env.reset(seed=task_seed)
    controller.reset(task_seed)
    info = env.info()
    initial_acc = info["val_acc"]
    ret, steps, ops = 0.0, 0, [0] * 6
    done = False
    while not done:
        action = controller.act(obs, info)
        ops[int(action[0])] += 1
        result = env.step(action)
        obs, info = result.observation, env.info()
        ret += result.reward
        steps += 1
        done = result.terminated or result.truncated
    return {
        "task_seed": task_seed,
        "return": ret,
        "steps": steps,
        "initial_val_acc": initial_acc,
        "final_val_acc": info["val_acc"],
        "params_added": info["added_params"],
        "base_params": info["base_params"],
        "rent_total": info["rent_total"],
        "op_counts": dict(zip(("wait", "germinate", "advance", "cull", "lr_up", "lr_down"), ops, strict=True)),
    }


def evaluate(
    controller: Controller | str,
    env_name: str,
    tasks: int,
    seed: int,
    split: str = "eval",
    **env_kw: Any,
) -> dict[str, Any]:
    """Run ``controller`` for one episode on each of ``tasks`` tasks (held-out split by default).

    Task seeds are derived from ``seed``, so two calls with the same arguments give the same tasks.
    ``host-train:paired`` (a training reward) is evaluated as host-train, on the return itself.
    """
    if tasks < 1:
        raise ValueError("tasks must be >= 1")
    if not is_host_env(env_name):
        raise ValueError(f"evaluate() runs the host envs {HOST_ENVS}, not {env_name!r}")
    if env_name == PAIRED_HOST_TRAIN:
        env_name = "host-train"
    ctrl = make_controller(controller, seed) if isinstance(controller, str) else controller
    env = make_env(env_name, seed=seed, split=split, **env_kw)
    assert isinstance(env, HostEnv)
    started = time.perf_counter()
    per_task = [run_episode(env, ctrl, s) for s in task_seeds(seed, tasks)]
    returns = np.array([t["return"] for t in per_task])
    lo, hi = confidence_interval(returns)
    return {
        "controller": ctrl.name,
        "env": env_name,
        "split": split,
        "tasks": tasks,
        "seed": seed,
        "mean_return": float(returns.mean()),
        "return_ci95": [lo, hi],
        "mean_final_val_acc": float(np.mean([t["final_val_acc"] for t in per_task])),
        "mean_params_added": float(np.mean([t["params_added"] for t in per_task])),
        "seconds": time.perf_counter() - started,
        "per_task": per_task,
    }
