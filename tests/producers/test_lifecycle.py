"""The seed lifecycle table: what is legal, what raises."""

from __future__ import annotations

import itertools

import pytest

from tamiyo.producers import lifecycle as lc
from tamiyo.producers.lifecycle import Cause, IllegalTransition, Stage

HAPPY_PATH = [
    Stage.DORMANT,
    Stage.GERMINATED,
    Stage.TRAINING,
    Stage.BLENDING,
    Stage.PROBATIONARY,
    Stage.FOSSILIZED,
]
CULL_PATH = [Stage.CULLED, Stage.EMBARGOED, Stage.RESETTING, Stage.DORMANT]


def test_happy_path_is_legal_step_by_step() -> None:
    causes = [Cause.GERMINATE, Cause.ADVANCE, Cause.ADVANCE, Cause.ADVANCE, Cause.ADVANCE]
    for (src, dst), cause in zip(itertools.pairwise(HAPPY_PATH), causes, strict=True):
        assert lc.transition(src, dst, cause) == dst


def test_shadowing_detour_is_legal() -> None:
    assert lc.is_legal(Stage.BLENDING, Stage.SHADOWING, Cause.ADVANCE)
    assert lc.is_legal(Stage.SHADOWING, Stage.PROBATIONARY, Cause.ADVANCE)


@pytest.mark.parametrize("stage", sorted(lc.CULLABLE))
def test_every_live_stage_can_be_culled_and_recovers_through_embargo(stage: int) -> None:
    assert lc.transition(stage, Stage.CULLED, Cause.CULL) == Stage.CULLED
    for src, dst in itertools.pairwise(CULL_PATH):
        assert lc.transition(src, dst, Cause.AUTO) == dst


@pytest.mark.parametrize(
    ("src", "dst", "cause"),
    [
        (Stage.DORMANT, Stage.TRAINING, Cause.ADVANCE),  # must germinate first
        (Stage.DORMANT, Stage.GERMINATED, Cause.ADVANCE),  # right edge, wrong cause
        (Stage.GERMINATED, Stage.BLENDING, Cause.ADVANCE),  # skips training
        (Stage.TRAINING, Stage.FOSSILIZED, Cause.ADVANCE),  # skips blending and probation
        (Stage.FOSSILIZED, Stage.CULLED, Cause.CULL),  # fossils are permanent
        (Stage.DORMANT, Stage.CULLED, Cause.CULL),  # nothing to cull
        (Stage.CULLED, Stage.DORMANT, Cause.AUTO),  # the embargo cannot be skipped
        (Stage.EMBARGOED, Stage.DORMANT, Cause.AUTO),
        (Stage.EMBARGOED, Stage.GERMINATED, Cause.GERMINATE),
        (Stage.TERMINATED, Stage.DORMANT, Cause.AUTO),
        (Stage.UNKNOWN, Stage.DORMANT, Cause.AUTO),
        (Stage.TRAINING, Stage.TRAINING, Cause.ADVANCE),
    ],
)
def test_illegal_transitions_raise(src: int, dst: int, cause: Cause) -> None:
    assert not lc.is_legal(src, dst, cause)
    with pytest.raises(IllegalTransition):
        lc.transition(src, dst, cause)


def test_nothing_leads_to_unknown_and_nothing_leaves_terminated() -> None:
    for src, dst in lc.TRANSITIONS:
        assert dst != Stage.UNKNOWN
        assert src != Stage.TERMINATED


def test_helper_tables_agree_with_the_transition_table() -> None:
    for src, dst in lc.ADVANCE_TARGET.items():
        assert lc.is_legal(src, dst, Cause.ADVANCE)
    for src, dst in lc.AUTO_TARGET.items():
        assert lc.is_legal(src, dst, Cause.AUTO)
    for stage in lc.ALL_STAGES:
        assert lc.can_cull(stage) == lc.is_legal(stage, Stage.CULLED, Cause.CULL)
        advance_edges = [d for (s, d), c in lc.TRANSITIONS.items() if s == stage and c is Cause.ADVANCE]
        assert (lc.advance_target(stage) is not None) == bool(advance_edges)


def test_every_stage_but_unknown_and_terminated_can_reach_fossilized_or_dormant() -> None:
    graph: dict[int, set[int]] = {}
    for src, dst in lc.TRANSITIONS:
        if dst != Stage.TERMINATED:
            graph.setdefault(src, set()).add(dst)
    for start in lc.ALL_STAGES:
        if start in (Stage.UNKNOWN, Stage.TERMINATED):
            continue
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in graph.get(frontier.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert Stage.FOSSILIZED in seen or Stage.DORMANT in seen, lc.stage_name(start)
