"""The seed lifecycle as one table of legal transitions (Leyline `SeedLifecycleStage`).

Happy path:  DORMANT → GERMINATED → TRAINING → BLENDING → PROBATIONARY → FOSSILIZED
(BLENDING → SHADOWING → PROBATIONARY is the legal detour for a seed kept at full
weight but not yet trusted).  Failure path: any live stage → CULLED → EMBARGOED →
RESETTING → DORMANT.  TERMINATED ends a slot (host shut down) from any stage but
UNKNOWN.

Every transition carries the cause that may trigger it: a controller op
(germinate / advance / cull) or the environment's clock (auto).  Anything not in
the table raises `IllegalTransition`; envs and masks both read this table, so a
mask can never allow what `transition` would refuse.
"""

from __future__ import annotations

from enum import Enum

from tamiyo.contracts.proto import leyline_pb2 as pb


class Stage:
    """Short aliases for the Leyline enum values (plain ints, cheap to compare)."""

    UNKNOWN = pb.SEED_STAGE_UNKNOWN
    DORMANT = pb.SEED_STAGE_DORMANT
    GERMINATED = pb.SEED_STAGE_GERMINATED
    TRAINING = pb.SEED_STAGE_TRAINING
    BLENDING = pb.SEED_STAGE_BLENDING
    SHADOWING = pb.SEED_STAGE_SHADOWING
    PROBATIONARY = pb.SEED_STAGE_PROBATIONARY
    FOSSILIZED = pb.SEED_STAGE_FOSSILIZED
    CULLED = pb.SEED_STAGE_CULLED
    EMBARGOED = pb.SEED_STAGE_EMBARGOED
    RESETTING = pb.SEED_STAGE_RESETTING
    TERMINATED = pb.SEED_STAGE_TERMINATED


ALL_STAGES: tuple[int, ...] = tuple(sorted(pb.SeedLifecycleStage.values()))


class Cause(Enum):
    GERMINATE = "germinate"
    ADVANCE = "advance"
    CULL = "cull"
    AUTO = "auto"  # the environment's clock (embargo expiry, reset completion)
    TERMINATE = "terminate"


class IllegalTransition(ValueError):
    pass


S = Stage
# Stages in which a seed module exists and can still be removed.
CULLABLE: frozenset[int] = frozenset({S.GERMINATED, S.TRAINING, S.BLENDING, S.SHADOWING, S.PROBATIONARY})
# Stages whose module contributes to the host's output (alpha may still be ramping).
CONTRIBUTING: frozenset[int] = frozenset({S.BLENDING, S.SHADOWING, S.PROBATIONARY, S.FOSSILIZED})
# Stages whose module receives gradients (GERMINATED seeds exist but wait to be trained).
LEARNING: frozenset[int] = frozenset({S.TRAINING, S.BLENDING, S.SHADOWING, S.PROBATIONARY, S.FOSSILIZED})
# Stages that hold parameters (and so pay rent).
HOLDS_PARAMETERS: frozenset[int] = CULLABLE | {S.FOSSILIZED}

TRANSITIONS: dict[tuple[int, int], Cause] = {
    (S.DORMANT, S.GERMINATED): Cause.GERMINATE,
    (S.GERMINATED, S.TRAINING): Cause.ADVANCE,
    (S.TRAINING, S.BLENDING): Cause.ADVANCE,
    (S.BLENDING, S.PROBATIONARY): Cause.ADVANCE,
    (S.BLENDING, S.SHADOWING): Cause.ADVANCE,
    (S.SHADOWING, S.PROBATIONARY): Cause.ADVANCE,
    (S.PROBATIONARY, S.FOSSILIZED): Cause.ADVANCE,
    **{(stage, S.CULLED): Cause.CULL for stage in CULLABLE},
    (S.CULLED, S.EMBARGOED): Cause.AUTO,
    (S.EMBARGOED, S.RESETTING): Cause.AUTO,
    (S.RESETTING, S.DORMANT): Cause.AUTO,
    **{(stage, S.TERMINATED): Cause.TERMINATE for stage in ALL_STAGES if stage not in (S.UNKNOWN, S.TERMINATED)},
}

# The stage ADVANCE leads to from each stage (the envs use the main path, never SHADOWING).
ADVANCE_TARGET: dict[int, int] = {
    S.GERMINATED: S.TRAINING,
    S.TRAINING: S.BLENDING,
    S.BLENDING: S.PROBATIONARY,
    S.SHADOWING: S.PROBATIONARY,
    S.PROBATIONARY: S.FOSSILIZED,
}
AUTO_TARGET: dict[int, int] = {S.CULLED: S.EMBARGOED, S.EMBARGOED: S.RESETTING, S.RESETTING: S.DORMANT}


def stage_name(stage: int) -> str:
    return pb.SeedLifecycleStage.Name(stage)


def is_legal(src: int, dst: int, cause: Cause | None = None) -> bool:
    found = TRANSITIONS.get((src, dst))
    return found is not None and (cause is None or found is cause)


def transition(src: int, dst: int, cause: Cause) -> int:
    """Return ``dst`` if ``src → dst`` is legal for ``cause``; raise `IllegalTransition` otherwise."""
    if not is_legal(src, dst, cause):
        raise IllegalTransition(f"{stage_name(src)} → {stage_name(dst)} by {cause.value} is not legal")
    return dst


def advance_target(stage: int) -> int | None:
    return ADVANCE_TARGET.get(stage)


def can_cull(stage: int) -> bool:
    return stage in CULLABLE
