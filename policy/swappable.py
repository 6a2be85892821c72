"""The learned behaviour policy of an actor: the TamiyoGNN, replaced in place when a newer
verified snapshot arrives (no restart); every step records the version used.
(Baseline controllers act through the producers' `ControllerPolicy`, behind the same `Policy` interface.)
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.policy.model import TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.policy.protocol import PolicyStep


class SwappablePolicy:
    """A `ModelPolicy` whose network can be swapped from another thread between steps."""

    def __init__(
        self, model: TamiyoGNN | None = None, version: int = -1, device: str = "cpu", deterministic: bool = False
    ) -> None:
        self.device = device
        self.deterministic = deterministic  # greedy (serving, evaluation) instead of sampling (acting)
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
            self._inner = ModelPolicy(
                model.to(self.device), version=version, device=self.device, deterministic=self.deterministic
            )
        self._ready.set()

    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        """Copy a newer snapshot's weights into the current network in place (strict: every tensor,
        same shapes).  Far cheaper than building a network per snapshot, which the learner publishes
        every few updates."""
        with self._lock:
            inner = self._inner
            if inner is None:
                raise RuntimeError("no policy loaded yet")
            own = inner.model.state_dict()
            # Check everything first: load_state_dict copies tensor by tensor and would leave a
            # half-updated network behind a mismatch found midway.
            if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
                raise ValueError("snapshot weights do not match the network's tensors and shapes")
            inner.model.load_state_dict(state, strict=True)
            inner.version = version

    @property
    def model(self) -> TamiyoGNN | None:
        inner = self._inner
        return inner.model if inner is not None else None

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def __call__(self, graphs: PackedGraphs, masks: np.ndarray) -> PolicyStep:
        # The lock is held through the forward pass: weights are replaced in place between steps,
        # never during one.
        with self._lock:
            inner = self._inner
            if inner is None:
                raise RuntimeError("no policy loaded yet")
            with torch.inference_mode():
                return inner(graphs, masks)
