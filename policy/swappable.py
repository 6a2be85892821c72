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
        self._own: tuple[TamiyoGNN, int, dict[str, torch.Tensor]] | None = None  # see _tensors
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
        every update.  The copy is one ``torch._foreach_copy_`` over the network's own tensors (cached per
        network): ``load_state_dict`` walks all ~100 modules and cost ~2.5 ms per snapshot on the host-sim
        network (profiled in a running actor: ~10% of its CPU at ~9 snapshots/s); this costs ~0.1 ms."""
        with self._lock:
            inner = self._inner
            if inner is None:
                raise RuntimeError("no policy loaded yet")
            own = self._tensors(inner)
            # Check everything first: a copy that fails midway would leave a half-updated network behind.
            if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
                raise ValueError("snapshot weights do not match the network's tensors and shapes")
            names = list(own)
            with torch.no_grad():
                torch._foreach_copy_([own[k] for k in names], [state[k] for k in names])
            inner.version = version

    def _tensors(self, inner: ModelPolicy) -> dict[str, torch.Tensor]:
        """The network's parameters and buffers by state-dict name, sharing their storage (so copying into
        them updates the network); cached for the network they were taken from."""
        model = inner.model
        # Keyed on the storage too: converting the same network in place (.to(dtype), another device) gives
        # its parameters new storage, and the cached tensors would then be orphans.
        storage = next(model.parameters()).data_ptr()
        if self._own is None or self._own[0] is not model or self._own[1] != storage:
            self._own = (model, storage, dict(model.state_dict(keep_vars=False)))
        return self._own[2]

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
