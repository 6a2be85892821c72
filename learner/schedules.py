"""Learning-rate schedules as pure functions of the update index."""

from __future__ import annotations

from torch.optim import Optimizer


def linear_warmup_decay(update: int, total_updates: int, warmup_updates: int = 0, final_ratio: float = 0.1) -> float:
    """LR multiplier: linear ramp 1/w..1 over ``warmup_updates``, then linear decay to
    ``final_ratio`` at ``total_updates`` (and flat after it)."""
    if warmup_updates > 0 and update < warmup_updates:
        return (update + 1) / warmup_updates
    span = max(1, total_updates - warmup_updates)
    frac = min(1.0, max(0.0, (update - warmup_updates) / span))
    return 1.0 + (final_ratio - 1.0) * frac


def set_lr(optimizer: Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
