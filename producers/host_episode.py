"""The state of one host-env episode and its per-epoch bookkeeping: the reward, rent and plateau.

Reward of a step = (val acc after the epoch − val acc before) − rent, where
rent = rent_rate × (parameters held by seeds during the epoch) / (host base
parameters).  Over an episode the rewards telescope to
final acc − initial acc − total rent (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tamiyo.producers.host_backend import EpochStats, HostShape
from tamiyo.producers.seed_slots import SeedSlot, held_params

# A validation loss below this fraction of the best so far (a >0.5% relative improvement)
# restarts the plateau count (GLOBAL_FEATURES "plateau").
PLATEAU_LOSS_RATIO = 0.995


def epoch_reward(
    acc_before: float, acc_after: float, held: int, base_params: int, rent_rate: float
) -> tuple[float, float]:
    """(reward, rent) of one epoch in which the seeds held ``held`` parameters."""
    rent = rent_rate * held / base_params
    return (acc_after - acc_before) - rent, rent


@dataclass
class Episode:
    shape: HostShape
    stats: EpochStats  # the latest measurement
    slots: list[SeedSlot]
    costs: list[list[int]]  # [slot][blueprint] parameters a seed would add (fixed by the shape)
    budget_total: int  # parameters all seeds together may hold
    epoch: int = 0
    lr_step: int = 0  # the LR is initial_lr * 2**lr_step
    initial_acc: float = 0.0
    prev_val_loss: float = 0.0
    prev_val_acc: float = 0.0
    best_val_loss: float = math.inf
    plateau: int = 0
    rent_total: float = 0.0
    done: bool = False

    @classmethod
    def start(
        cls, shape: HostShape, stats: EpochStats, num_slots: int, costs: list[list[int]], budget_total: int
    ) -> Episode:
        return cls(
            shape=shape,
            stats=stats,
            slots=[SeedSlot() for _ in range(num_slots)],
            costs=costs,
            budget_total=budget_total,
            initial_acc=stats.val_acc,
            prev_val_loss=stats.val_loss,
            prev_val_acc=stats.val_acc,
            best_val_loss=stats.val_loss,
        )

    @property
    def lr(self) -> float:
        return self.shape.initial_lr * 2.0**self.lr_step

    def added_params(self) -> int:
        return held_params(self.slots)

    def budget_left(self) -> int:
        return self.budget_total - self.added_params()

    def close_epoch(self, stats: EpochStats, held: int, rent_rate: float) -> tuple[float, float]:
        """Book the epoch just trained (``held``: seed parameters during it); return (reward, rent)."""
        reward, rent = epoch_reward(self.stats.val_acc, stats.val_acc, held, self.shape.base_params, rent_rate)
        self.rent_total += rent
        self.prev_val_loss, self.prev_val_acc = self.stats.val_loss, self.stats.val_acc
        self.stats = stats
        if stats.val_loss < self.best_val_loss * PLATEAU_LOSS_RATIO:
            self.best_val_loss, self.plateau = stats.val_loss, 0
        else:
            self.plateau += 1
        self.epoch += 1
        return reward, rent
