"""Behaviour policies an actor steps its environments with.

- `SwappablePolicy`: the learned TamiyoGNN, replaced in place when a newer
  verified snapshot arrives (no restart); every step records the version used.
- `ControllerPolicy`: a baseline controller (heuristic / random / none / tuned)
  behind the same `Policy` interface, so baselines can feed the bus too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.learner.model import TamiyoGNN
from tamiyo.learner.policy import ModelPolicy
from tamiyo.producers.controllers import Controller, RandomController
from tamiyo.producers.env_api import Observation
from tamiyo.producers.rollout import PolicyStep


class SwappablePolicy:
    """A `ModelPolicy` whose network can be swapped from another thread between steps."""

    def __init__(self, model: TamiyoGNN | None = None, version: int = -1, device: str = "cpu") -> None:
        self.device = device
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._inner: ModelPolicy | None = None
        if model is not None:
            self.swap(model, version)

    @property
    def version(self) -> int:
        inner = self._inner
        return inner.version if inner is not None else -1

    def swap(self, model: TamiyoGNN, version: int) -> None:
        model.eval()
        with self._lock:
            self._inner = ModelPolicy(model.to(self.device), version=version, device=self.device)
        self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def __call__(self, graphs: PackedGraphs, masks: np.ndarray) -> PolicyStep:
        with self._lock:
            inner = self._inner
        if inner is None:
            raise RuntimeError("no policy loaded yet")
        with torch.inference_mode():
            return inner(graphs, masks)


class ControllerPolicy:
    """Adapts per-env baseline controllers to the batched `Policy` interface.

    Behaviour log-probs: deterministic controllers choose with probability 1
    (log-prob 0); `random` is uniform over the valid joint actions.
    """

    def __init__(self, envs: Sequence, controllers: Sequence[Controller]) -> None:
        if len(envs) != len(controllers):
            raise ValueError("one controller per env")
        self.envs = list(envs)
        self.controllers = list(controllers)
        self._last_epoch = [None] * len(envs)

    def __call__(self, graphs: PackedGraphs, masks: np.ndarray) -> PolicyStep:
        n = len(self.envs)
        actions = np.zeros((n, 3), dtype=np.int32)
        log_probs = np.zeros(n, dtype=np.float32)
        for i, (env, ctl) in enumerate(zip(self.envs, self.controllers, strict=True)):
            info = env.info()
            # A new episode starts when the epoch counter goes back (the collector reset the env).
            if self._last_epoch[i] is None or info["epoch"] < self._last_epoch[i]:
                ctl.reset()
            self._last_epoch[i] = info["epoch"]
            obs = Observation(graph=graphs.select(np.array([i])), action_mask=masks[i])
            actions[i] = ctl.act(obs, info)
            if isinstance(ctl, RandomController):
                log_probs[i] = -np.log(float(masks[i].sum()))
        return PolicyStep(actions=actions, log_probs=log_probs, version=0)
