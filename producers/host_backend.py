"""The host side of a host env: what a `HostBackend` is, what it reports, and the env's configuration.

A backend owns the host network (host-train: a real torch MLP, host-sim: an
analytical surrogate) and only answers "train one epoch with these seed
weights"; everything the controller sees and does lives in `HostEnv`
(host_env.py).  Pure data and a protocol: no torch, so host-sim stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tamiyo.contracts.host_schema import DEFAULT_NUM_SLOTS
from tamiyo.producers.blueprints import Blueprint

# The two disjoint task streams (held-out tasks for evaluation); the code seeds the task RNG.
SPLIT_CODES: dict[str, int] = {"train": 0, "eval": 1}


@dataclass(frozen=True)
class HostShape:
    """The static shape of one task's host network (L = S + 1 Linear layers)."""

    layer_fan_in: tuple[int, ...]
    layer_fan_out: tuple[int, ...]
    slot_width: int
    base_params: int
    num_classes: int
    initial_lr: float


@dataclass
class EpochStats:
    """What the backend measured after one epoch (or at reset, before training)."""

    val_acc: float
    val_loss: float  # cross-entropy, nats
    train_loss: float
    loss_variance: float
    grad_norm: float
    layer_weight_rms: np.ndarray  # [L]
    layer_grad_rms: np.ndarray  # [L]
    layer_dead_fraction: np.ndarray  # [L]
    slot_pressure: np.ndarray  # [S] RMS gradient at the slot's activation
    seed_grad_rms: np.ndarray  # [S] 0 where there is no seed
    seed_blend_gain: np.ndarray  # [S] -dL/dalpha / loss, 0 where there is no seed


class HostBackend(Protocol):
    num_slots: int

    def new_task(self, rng: np.random.Generator) -> tuple[HostShape, EpochStats]:
        """Draw a task and a fresh host from ``rng``; return its shape and untrained stats."""
        ...

    def plant(self, slot: int, blueprint: Blueprint) -> None: ...

    def remove(self, slot: int) -> None: ...

    def train_epoch(self, lr: float, alphas: list[float], seed_trains: list[bool]) -> EpochStats:
        """One epoch.  ``alphas[s]``: output weight of the seed at s; ``seed_trains[s]``: it learns."""
        ...


@dataclass
class HostConfig:
    num_slots: int = DEFAULT_NUM_SLOTS
    epoch_budget: int = 30
    rent_rate: float = 0.0003  # reward per epoch per 100% of base parameters held by seeds
    param_budget: float = 3.0  # seeds may add at most this fraction of the base parameters
    blend_epochs: int = 3  # alpha ramp length
    embargo_epochs: int = 3
    probation_epochs: int = 1  # before fossilization is allowed
    lr_steps: int = 3  # LR may move this many doublings/halvings from its initial value
    split: str = "train"  # "train" | "eval": disjoint task streams (held-out tasks), see SPLIT_CODES
