"""Generalized Advantage Estimation (Schulman et al. 2016), time-major ``[T, B]``."""

from __future__ import annotations

import torch


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    discounts: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), both ``[T, B]``.

    ``discounts[t] = gamma * (1 - terminated[t])``: zero cuts the bootstrap at an
    episode end.  A time-limit truncation is handled by the caller folding
    ``gamma * V(final obs)`` into the reward and passing discount 0, so the
    next unroll row (a new episode) never leaks into this one.
    """
    t_len = rewards.shape[0]
    advantages = torch.empty_like(rewards)
    next_value = bootstrap_value
    next_adv = torch.zeros_like(bootstrap_value)
    for t in reversed(range(t_len)):
        delta = rewards[t] + discounts[t] * next_value - values[t]
        next_adv = delta + discounts[t] * lam * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values
