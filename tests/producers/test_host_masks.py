"""The joint action mask, from slots, costs, budget and LR step alone (no env)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tamiyo.contracts.host_schema import (
    NUM_OPS,
    OP_ADVANCE,
    OP_CULL,
    OP_GERMINATE,
    OP_LR_DOWN,
    OP_LR_UP,
    OP_WAIT,
    joint_index,
)
from tamiyo.producers import lifecycle as lc
from tamiyo.producers.host_masks import joint_action_mask, mask_allows
from tamiyo.producers.lifecycle import Cause, Stage
from tamiyo.producers.seed_slots import SeedSlot

COSTS = [[300, 600, 40], [200, 400, 30], [200, 400, 30]]


def _mask(slots: list[SeedSlot], budget_left: int = 10_000, lr_step: int = 0, done: bool = False) -> np.ndarray:
    return joint_action_mask(
        slots, COSTS, 3, budget_left=budget_left, lr_step=lr_step, lr_steps=2, probation_epochs=1, done=done
    ).reshape(NUM_OPS, 3, 3)


def test_a_fresh_host_allows_wait_germination_everywhere_and_both_lr_moves() -> None:
    mask = _mask([SeedSlot() for _ in range(3)])
    assert mask[OP_WAIT, 0, 0] and mask[OP_GERMINATE].all() and mask[OP_LR_UP, 0, 0] and mask[OP_LR_DOWN, 0, 0]
    assert not mask[OP_ADVANCE].any() and not mask[OP_CULL].any()
    assert mask.sum() == 1 + 9 + 2  # ops without a slot or blueprint only at (op, 0, 0)


def test_germination_needs_a_dormant_slot_and_a_blueprint_that_fits_the_budget() -> None:
    slots = [SeedSlot(), SeedSlot(stage=Stage.EMBARGOED), SeedSlot(stage=Stage.TRAINING)]
    mask = _mask(slots, budget_left=300)
    assert mask[OP_GERMINATE, 0].tolist() == [True, False, True]  # a cost equal to the budget fits
    assert not mask[OP_GERMINATE, 1:].any()


def test_advance_and_cull_follow_the_slot_stage() -> None:
    slots = [
        SeedSlot(stage=Stage.BLENDING, alpha=0.5),
        SeedSlot(stage=Stage.PROBATIONARY, alpha=1.0, epochs_in_stage=1),
        SeedSlot(stage=Stage.FOSSILIZED, alpha=1.0),
    ]
    mask = _mask(slots)
    assert mask[OP_ADVANCE, :, 0].tolist() == [False, True, False]  # blending waits for its ramp
    assert mask[OP_CULL, :, 0].tolist() == [True, True, False]  # a fossil is part of the host now
    assert not mask[OP_ADVANCE, :, 1:].any() and not mask[OP_CULL, :, 1:].any()


def test_the_lr_stays_within_its_steps() -> None:
    up, down = _mask([SeedSlot()] * 3, lr_step=2), _mask([SeedSlot()] * 3, lr_step=-2)
    assert not up[OP_LR_UP, 0, 0] and up[OP_LR_DOWN, 0, 0]
    assert down[OP_LR_UP, 0, 0] and not down[OP_LR_DOWN, 0, 0]


def test_a_finished_episode_allows_only_wait() -> None:
    mask = _mask([SeedSlot(), SeedSlot(stage=Stage.TRAINING), SeedSlot()], done=True)
    assert np.flatnonzero(mask).tolist() == [0]


def test_mask_allows_reads_the_flat_index_and_refuses_out_of_range_triples() -> None:
    mask = np.zeros(NUM_OPS * 3 * 2, dtype=bool)
    mask[joint_index(OP_GERMINATE, 2, 1, 3, 2)] = True
    assert mask_allows(mask, OP_GERMINATE, 2, 1, 3, 2)
    assert not mask_allows(mask, OP_GERMINATE, 2, 0, 3, 2)
    for op, slot, bp in [(-1, 0, 0), (NUM_OPS, 0, 0), (0, 3, 0), (0, -1, 0), (0, 0, 2), (0, 0, -1)]:
        assert not mask_allows(mask, op, slot, bp, 3, 2)


stages = st.sampled_from(lc.ALL_STAGES[1:])  # UNKNOWN never occurs in a slot


@settings(max_examples=300, deadline=None)
@given(
    slot_states=st.lists(
        st.tuples(stages, st.sampled_from([0.0, 0.5, 1.0]), st.integers(0, 3)), min_size=3, max_size=3
    ),
    budget_left=st.integers(-50, 700),
    lr_step=st.integers(-2, 2),
    done=st.booleans(),
)
def test_the_mask_is_what_the_lifecycle_table_allows(
    slot_states: list[tuple[int, float, int]], budget_left: int, lr_step: int, done: bool
) -> None:
    slots = [SeedSlot(stage=s, alpha=a, epochs_in_stage=e) for s, a, e in slot_states]
    expected = np.zeros((NUM_OPS, 3, 3), dtype=bool)
    expected[OP_WAIT, 0, 0] = True
    if not done:
        for i, s in enumerate(slots):
            if lc.is_legal(s.stage, Stage.GERMINATED, Cause.GERMINATE):
                expected[OP_GERMINATE, i] = [c <= budget_left for c in COSTS[i]]
            target = lc.advance_target(s.stage)
            if target is not None and lc.is_legal(s.stage, target, Cause.ADVANCE):
                ramp_done = s.stage != Stage.BLENDING or s.alpha >= 1.0
                expected[OP_ADVANCE, i, 0] = ramp_done and (s.stage != Stage.PROBATIONARY or s.epochs_in_stage >= 1)
            expected[OP_CULL, i, 0] = lc.is_legal(s.stage, Stage.CULLED, Cause.CULL)
        expected[OP_LR_UP, 0, 0] = lr_step < 2
        expected[OP_LR_DOWN, 0, 0] = lr_step > -2
    np.testing.assert_array_equal(_mask(slots, budget_left, lr_step, done), expected)
