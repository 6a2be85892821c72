"""Episode bookkeeping: reward = accuracy gain − rent, the plateau count, the LR steps."""

from __future__ import annotations

import numpy as np
import pytest

from tamiyo.producers.host_backend import EpochStats, HostShape
from tamiyo.producers.host_episode import PLATEAU_LOSS_RATIO, Episode, epoch_reward
from tamiyo.producers.lifecycle import Stage
from tamiyo.producers.seed_slots import SeedSlot

SHAPE = HostShape((10, 8), (8, 2), 8, 1000, 2, 0.01)


def _stats(val_acc: float, val_loss: float) -> EpochStats:
    zeros = np.zeros(2)
    return EpochStats(val_acc, val_loss, val_loss, 0.0, 0.0, zeros, zeros, zeros, zeros[:1], zeros[:1], zeros[:1])


def test_reward_is_the_accuracy_gain_minus_rent_on_held_parameters() -> None:
    reward, rent = epoch_reward(0.5, 0.6, held=500, base_params=1000, rent_rate=0.01)
    assert rent == pytest.approx(0.005) and reward == pytest.approx(0.1 - 0.005)
    assert epoch_reward(0.5, 0.4, 0, 1000, 0.01) == pytest.approx((-0.1, 0.0))


def test_close_epoch_books_the_epoch_and_counts_the_plateau() -> None:
    ep = Episode.start(SHAPE, _stats(0.5, 1.0), 1, [[100]], budget_total=3000)
    assert (ep.initial_acc, ep.best_val_loss, ep.epoch) == (0.5, 1.0, 0)
    reward, rent = ep.close_epoch(_stats(0.6, 1.0 * PLATEAU_LOSS_RATIO), held=100, rent_rate=0.01)
    assert (reward, rent) == pytest.approx((0.1 - 0.001, 0.001))
    assert (ep.epoch, ep.prev_val_acc, ep.prev_val_loss, ep.rent_total) == (1, 0.5, 1.0, rent)
    assert ep.plateau == 1  # exactly 0.5% better is not an improvement
    ep.close_epoch(_stats(0.6, 0.9), held=0, rent_rate=0.01)
    assert (ep.plateau, ep.best_val_loss) == (0, 0.9)
    ep.close_epoch(_stats(0.6, 0.95), held=0, rent_rate=0.01)
    assert (ep.plateau, ep.best_val_loss) == (1, 0.9)


def test_lr_and_budget_follow_the_episode_state() -> None:
    ep = Episode.start(SHAPE, _stats(0.5, 1.0), 2, [[100], [60]], budget_total=3000)
    ep.lr_step = -2
    assert ep.lr == pytest.approx(0.0025)
    ep.slots[0] = SeedSlot(Stage.TRAINING, blueprint=0, params=100)
    ep.slots[1] = SeedSlot(Stage.CULLED, blueprint=0, params=0)
    assert (ep.added_params(), ep.budget_left()) == (100, 2900)
