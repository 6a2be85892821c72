"""The joint action mask of the host envs: which (op, slot, blueprint) triples are allowed now.

Layout [NUM_OPS, S, B] in C order, flattened (host_schema.py); ops that do not
use a slot or a blueprint are allowed only at (op, 0, 0), and WAIT always is.
What a slot allows comes from the lifecycle table via seed_slots.py, so a mask
never allows what `lifecycle.transition` would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tamiyo.contracts.host_schema import NUM_OPS, OP_ADVANCE, OP_CULL, OP_GERMINATE, OP_LR_DOWN, OP_LR_UP
from tamiyo.producers import lifecycle as lc
from tamiyo.producers.seed_slots import SeedSlot, Stage, can_advance


def joint_action_mask(
    slots: Sequence[SeedSlot],
    costs: Sequence[Sequence[int]],
    num_blueprints: int,
    *,
    budget_left: int,
    lr_step: int,
    lr_steps: int,
    probation_epochs: int,
    done: bool,
) -> np.ndarray:
    """bool [NUM_OPS * S * B].  ``costs[s][b]``: parameters blueprint b adds at slot s; germinating
    needs them to fit ``budget_left``; the LR may move ``lr_steps`` steps either way; a finished
    episode allows only WAIT."""
    n_s, n_b = len(slots), num_blueprints
    # Flat indices collected in a list, set at once: cheaper than per-element numpy writes.
    allowed = [0]  # WAIT at (0, 0)
    if not done:
        for i, s in enumerate(slots):
            if s.stage == Stage.DORMANT:
                row = costs[i]
                allowed.extend((OP_GERMINATE * n_s + i) * n_b + b for b in range(n_b) if row[b] <= budget_left)
            if can_advance(s, probation_epochs):
                allowed.append((OP_ADVANCE * n_s + i) * n_b)
            if s.stage in lc.CULLABLE:
                allowed.append((OP_CULL * n_s + i) * n_b)
        if lr_step < lr_steps:
            allowed.append(OP_LR_UP * n_s * n_b)
        if lr_step > -lr_steps:
            allowed.append(OP_LR_DOWN * n_s * n_b)
    mask = np.zeros(NUM_OPS * n_s * n_b, dtype=np.bool_)
    mask[allowed] = True
    return mask


def mask_allows(mask: np.ndarray, op: int, slot: int, bp: int, num_slots: int, num_blueprints: int) -> bool:
    """Whether ``mask`` allows (op, slot, bp); out-of-range triples are never allowed."""
    if not (0 <= op < NUM_OPS and 0 <= slot < num_slots and 0 <= bp < num_blueprints):
        return False
    return bool(mask[(op * num_slots + slot) * num_blueprints + bp])
