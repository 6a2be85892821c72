"""Seed slots: the effects of germinate / advance / cull, the alpha ramp and the end-of-epoch clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tamiyo.producers import lifecycle as lc
from tamiyo.producers import seed_slots as ss
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.host_backend import HostShape
from tamiyo.producers.lifecycle import IllegalTransition, Stage
from tamiyo.producers.seed_slots import SeedSlot


def test_germinate_plants_a_seed_that_holds_parameters() -> None:
    slot = SeedSlot(epochs_in_stage=4)
    ss.germinate(slot, blueprint=2, params=120, val_acc=0.6)
    assert (slot.stage, slot.blueprint, slot.alpha, slot.params) == (Stage.GERMINATED, 2, 0.0, 120)
    assert slot.acc_at_germination == 0.6 and slot.epochs_in_stage == 0
    assert ss.held_params([slot, SeedSlot()]) == 120


def test_advance_walks_the_main_path_and_sets_alpha() -> None:
    slot = SeedSlot()
    ss.germinate(slot, 0, 10, 0.5)
    seen = []
    for _ in range(4):
        ss.advance(slot, blend_epochs=4)
        seen.append((slot.stage, slot.alpha))
    assert seen == [
        (Stage.TRAINING, 0.0),
        (Stage.BLENDING, 0.25),  # the first ramp step
        (Stage.PROBATIONARY, 1.0),
        (Stage.FOSSILIZED, 1.0),
    ]


def test_cull_drops_weight_and_parameters_but_keeps_the_blueprint_until_embargo() -> None:
    slot = SeedSlot()
    ss.germinate(slot, 1, 50, 0.5)
    ss.cull(slot)
    assert (slot.stage, slot.alpha, slot.params, slot.blueprint) == (Stage.CULLED, 0.0, 0, 1)
    assert ss.held_params([slot]) == 0


@pytest.mark.parametrize("stage", [Stage.DORMANT, Stage.FOSSILIZED, Stage.EMBARGOED])
def test_illegal_ops_raise_and_leave_the_slot_alone(stage: int) -> None:
    slot = SeedSlot(stage=stage, epochs_in_stage=2)
    with pytest.raises(IllegalTransition):
        ss.cull(slot)
    assert slot == SeedSlot(stage=stage, epochs_in_stage=2)
    if stage != Stage.DORMANT:
        with pytest.raises(IllegalTransition):
            ss.germinate(slot, 0, 10, 0.5)


def test_can_advance_waits_for_the_ramp_and_for_probation() -> None:
    assert not ss.can_advance(SeedSlot(), probation_epochs=1)
    assert ss.can_advance(SeedSlot(stage=Stage.GERMINATED), 1)
    assert ss.can_advance(SeedSlot(stage=Stage.TRAINING), 1)
    assert not ss.can_advance(SeedSlot(stage=Stage.BLENDING, alpha=0.99), 1)
    assert ss.can_advance(SeedSlot(stage=Stage.BLENDING, alpha=1.0), 1)
    assert not ss.can_advance(SeedSlot(stage=Stage.PROBATIONARY, epochs_in_stage=1), 2)
    assert ss.can_advance(SeedSlot(stage=Stage.PROBATIONARY, epochs_in_stage=2), 2)
    for stage in (Stage.FOSSILIZED, Stage.CULLED, Stage.EMBARGOED, Stage.RESETTING):
        assert not ss.can_advance(SeedSlot(stage=stage, alpha=1.0, epochs_in_stage=9), 0)


def test_alpha_ramps_once_per_epoch_after_the_first_and_stops_at_one() -> None:
    slot = SeedSlot(stage=Stage.BLENDING, alpha=1 / 3)
    alphas = []
    for _ in range(4):
        ss.ramp_alphas([slot], blend_epochs=3)
        alphas.append(slot.alpha)
        ss.end_epoch([slot], embargo_epochs=3)
    assert alphas == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    still = SeedSlot(stage=Stage.TRAINING, epochs_in_stage=5)
    ss.ramp_alphas([still], 3)
    assert still.alpha == 0.0


@pytest.mark.parametrize("embargo", [1, 3])
def test_the_clock_takes_a_culled_slot_back_to_dormant(embargo: int) -> None:
    slot = SeedSlot()
    ss.germinate(slot, 0, 10, 0.5)
    ss.cull(slot)
    stages = []  # at the end of each epoch, starting with the one the cull happened in
    while slot.stage != Stage.DORMANT:
        ss.end_epoch([slot], embargo)
        stages.append(slot.stage)
        if slot.stage == Stage.EMBARGOED:
            assert slot.blueprint == -1  # the seed is gone once the embargo starts
    assert stages == [Stage.CULLED, *[Stage.EMBARGOED] * embargo, Stage.RESETTING, Stage.DORMANT]
    assert slot.epochs_in_stage == 1  # aged at the end of the epoch that brought it back


def test_seed_costs_are_the_catalog_costs_at_each_slots_layer() -> None:
    shape = HostShape((20, 8, 8, 8), (8, 8, 8, 5), 8, 0, 5, 0.01)
    costs = ss.seed_costs(shape, CATALOG, num_slots=3)
    assert costs == [[bp.param_count(shape.layer_fan_in[i], 8) for bp in CATALOG] for i in range(3)]
    assert costs[0][0] > costs[1][0]  # the first slot reads the wider task input


# Any sequence of ops the lifecycle allows keeps a slot's fields consistent with its stage.
OPS = ("germinate", "advance", "cull", "wait")


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.sampled_from(OPS), max_size=40),
    blend=st.integers(1, 4),
    embargo=st.integers(1, 4),
    probation=st.integers(0, 2),
)
def test_legal_op_sequences_keep_the_slot_consistent(ops: list[str], blend: int, embargo: int, probation: int) -> None:
    slot = SeedSlot()
    for op in ops:
        if op == "germinate" and slot.stage == Stage.DORMANT:
            ss.germinate(slot, 1, 77, 0.4)
        elif op == "advance" and ss.can_advance(slot, probation):
            ss.advance(slot, blend)
        elif op == "cull" and lc.can_cull(slot.stage):
            ss.cull(slot)
        ss.ramp_alphas([slot], blend)
        ss.end_epoch([slot], embargo)
        assert 0.0 <= slot.alpha <= 1.0
        assert slot.alpha == 0.0 or slot.stage in lc.CONTRIBUTING
        assert slot.stage not in (Stage.PROBATIONARY, Stage.FOSSILIZED) or slot.alpha == 1.0
        assert (slot.params > 0) == (slot.stage in lc.HOLDS_PARAMETERS)
        assert (slot.blueprint >= 0) == (slot.stage in lc.HOLDS_PARAMETERS | {Stage.CULLED})
        assert (slot.embargo_left > 0) == (slot.stage == Stage.EMBARGOED)
        assert slot.epochs_in_stage >= 1
