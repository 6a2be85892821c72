"""The seed slots of a host and the lifecycle operations on them (the table is lifecycle.py's).

Pure bookkeeping on `SeedSlot`s: the effects of germinate / advance / cull, the
alpha ramp while blending, and the clock-driven end-of-epoch transitions.  The
backend is not touched here: `HostEnv` plants and removes the seed modules.
Every stage change goes through ``lc.transition``, looked up on the module at
each call (so a mask can never allow what the table refuses, and tests can spy
on every transition).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tamiyo.producers import lifecycle as lc
from tamiyo.producers.blueprints import Blueprint
from tamiyo.producers.host_backend import HostShape

Stage = lc.Stage


@dataclass
class SeedSlot:
    stage: int = Stage.DORMANT
    blueprint: int = -1  # catalog index, -1 without a seed
    alpha: float = 0.0
    epochs_in_stage: int = 0
    params: int = 0
    acc_at_germination: float = 0.0
    embargo_left: int = 0


def seed_costs(shape: HostShape, blueprints: Sequence[Blueprint], num_slots: int) -> list[list[int]]:
    """[slot][blueprint]: parameters the blueprint adds at the slot (a seed reads its layer's input)."""
    return [
        [bp.param_count(shape.layer_fan_in[i], shape.layer_fan_out[i]) for bp in blueprints] for i in range(num_slots)
    ]


def held_params(slots: Iterable[SeedSlot]) -> int:
    """Parameters the seeds hold (and pay rent for)."""
    return sum(s.params for s in slots if s.stage in lc.HOLDS_PARAMETERS)


def set_stage(slot: SeedSlot, dst: int, cause: lc.Cause) -> None:
    slot.stage = lc.transition(slot.stage, dst, cause)
    slot.epochs_in_stage = 0


def can_advance(slot: SeedSlot, probation_epochs: int) -> bool:
    """Whether ADVANCE is allowed now: the table has a target and the stage's clock has run."""
    target = lc.advance_target(slot.stage)
    if target is None:
        return False
    if slot.stage == Stage.BLENDING:
        return slot.alpha >= 1.0  # the ramp must finish before probation
    if slot.stage == Stage.PROBATIONARY:
        return slot.epochs_in_stage >= probation_epochs
    return True


def germinate(slot: SeedSlot, blueprint: int, params: int, val_acc: float) -> None:
    """Plant blueprint ``blueprint`` (catalog index) costing ``params``; ``val_acc``: accuracy now."""
    set_stage(slot, Stage.GERMINATED, lc.Cause.GERMINATE)
    slot.blueprint, slot.alpha = blueprint, 0.0
    slot.params = params
    slot.acc_at_germination = val_acc


def advance(slot: SeedSlot, blend_epochs: int) -> None:
    """One step along the main path; blending starts the alpha ramp, probation is at full weight."""
    target = lc.advance_target(slot.stage)
    assert target is not None  # guaranteed by the mask (can_advance)
    set_stage(slot, target, lc.Cause.ADVANCE)
    if target == Stage.BLENDING:
        slot.alpha = 1.0 / blend_epochs
    elif target in (Stage.PROBATIONARY, Stage.FOSSILIZED):
        slot.alpha = 1.0


def cull(slot: SeedSlot) -> None:
    """Remove the seed: it stops contributing and holding parameters at once; embargo follows."""
    set_stage(slot, Stage.CULLED, lc.Cause.CULL)
    slot.alpha, slot.params = 0.0, 0


def ramp_alphas(slots: Iterable[SeedSlot], blend_epochs: int) -> None:
    """Before an epoch: blending seeds (past their first epoch) move one ramp step towards alpha 1."""
    for s in slots:
        if s.stage == Stage.BLENDING and s.epochs_in_stage > 0:
            s.alpha = min(1.0, s.alpha + 1.0 / blend_epochs)


def end_epoch(slots: Iterable[SeedSlot], embargo_epochs: int) -> None:
    """End of epoch: the clock-driven transitions, then age every slot by one epoch."""
    for s in slots:
        if s.stage == Stage.CULLED and s.epochs_in_stage >= 1:
            set_stage(s, Stage.EMBARGOED, lc.Cause.AUTO)
            s.embargo_left = embargo_epochs
            s.blueprint = -1
        elif s.stage == Stage.EMBARGOED:
            s.embargo_left -= 1
            if s.embargo_left <= 0:
                set_stage(s, Stage.RESETTING, lc.Cause.AUTO)
        elif s.stage == Stage.RESETTING and s.epochs_in_stage >= 1:
            set_stage(s, Stage.DORMANT, lc.Cause.AUTO)
        s.epochs_in_stage += 1
    # Note: EMBARGOED is entered with epochs_in_stage 0 and aged here; the embargo counter
    # above is what times it out.
