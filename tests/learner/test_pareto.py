"""Pareto selection: fast non-dominated sort vs a naive O(N^2) check, crowding distance by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tamiyo.learner.pareto import (
    crowding_distance,
    dominates,
    fast_non_dominated_sort,
    objective_matrix,
    objectives_from_eval,
    ranks,
    select,
    worst_decile,
)

INF = math.inf


def naive_fronts(F: np.ndarray) -> list[list[int]]:
    """Peel fronts with the pairwise definition: the non-dominated points of what is left."""
    left = list(range(len(F)))
    fronts = []
    while left:
        front = [i for i in left if not any(dominates(F[j], F[i]) for j in left if j != i)]
        fronts.append(sorted(front))
        left = [i for i in left if i not in front]
    return fronts


def test_dominates_definition():
    assert dominates([1, 2], [2, 2]) and not dominates([2, 2], [1, 2])
    assert not dominates([1, 2], [1, 2])  # identical points do not dominate each other
    assert not dominates([1, 3], [2, 2]) and not dominates([2, 2], [1, 3])


@pytest.mark.parametrize("seed", range(25))
def test_fast_sort_matches_naive(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 40)), int(rng.integers(1, 4))
    # Small integer grids: plenty of ties and duplicate points.
    F = rng.integers(0, 4, size=(n, m)).astype(float)
    if seed % 3 == 0:
        F = np.concatenate([F, F[: n // 2]])  # explicit duplicates
    got = [f.tolist() for f in fast_non_dominated_sort(F)]
    assert got == naive_fronts(F)
    r = ranks(F)
    for k, front in enumerate(got):
        assert (r[front] == k).all()


def test_fronts_by_hand_with_duplicates():
    F = np.array([[1, 5], [2, 3], [2, 3], [3, 4], [5, 1], [4, 3.5], [6, 6]], dtype=float)
    assert [f.tolist() for f in fast_non_dominated_sort(F)] == [[0, 1, 2, 4], [3, 5], [6]]
    assert fast_non_dominated_sort(np.zeros((0, 2))) == []


def test_crowding_distance_by_hand():
    # Ranges 4 and 4.  Objective 0 order: p0 p1 p2 p3 -> p1 += (3-1)/4, p2 += (5-2)/4.
    # Objective 1 order: p3 p2 p1 p0 -> p2 += (3-1)/4, p1 += (5-2)/4.
    F = np.array([[1, 5], [2, 3], [3, 2], [5, 1]], dtype=float)
    assert crowding_distance(F).tolist() == [INF, 1.25, 1.25, INF]
    # Input order does not matter.
    perm = [2, 0, 3, 1]
    assert crowding_distance(F[perm]).tolist() == [1.25, INF, INF, 1.25]


def test_crowding_distance_duplicates_get_their_points_distance():
    F = np.array([[1, 5], [2, 3], [3, 2], [2, 3], [5, 1]], dtype=float)
    assert crowding_distance(F).tolist() == [INF, 1.25, 1.25, 1.25, INF]
    # Two distinct points (however many copies): all boundary.
    assert crowding_distance(np.array([[0, 1], [0, 1], [1, 0]], dtype=float)).tolist() == [INF] * 3
    assert crowding_distance(np.array([[3.0, 3.0]])).tolist() == [INF]


def test_crowding_distance_ties_broken_by_other_objectives():
    # Objective 1 is constant: zero range adds nothing; the boundary on it is decided by objective 0.
    F = np.array([[2, 0], [0, 0], [1, 0]], dtype=float)
    assert crowding_distance(F).tolist() == [INF, INF, 1.0]
    # A tie on objective 0 between p1 and p2, broken by objective 1: order p0(0,5) p1(1,3) p2(1,4) p3(3,0):
    #   p1 += (1-0)/3, p2 += (3-1)/3.  Objective 1 order: p3(0) p1(3) p2(4) p0(5): p1 += (4-0)/5, p2 += (5-3)/5.
    F = np.array([[0, 5], [1, 3], [1, 4], [3, 0]], dtype=float)
    d = crowding_distance(F)
    assert d[0] == INF and d[3] == INF
    assert d[1] == pytest.approx(1 / 3 + 4 / 5)
    assert d[2] == pytest.approx(2 / 3 + 2 / 5)
    # Three objectives, one with a tie, permutation-invariant.
    G = np.array([[0, 1, 2], [1, 1, 1], [2, 0, 0], [1, 2, 0], [0, 0, 3]], dtype=float)
    base = crowding_distance(G)
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(len(G))
        assert np.array_equal(crowding_distance(G[perm]), base[perm])


def test_objectives_and_selection():
    def result(returns, params):
        return {"per_task": [{"return": r, "params_added": p} for r, p in zip(returns, params, strict=True)]}

    assert worst_decile(list(range(20))) == 0.5  # ceil(2) lowest: 0 and 1
    assert worst_decile([3.0]) == 3.0
    o = objectives_from_eval(result([0.1, 0.2, 0.3, -0.4], [10, 20, 30, 40]))
    assert o == {"mean_return": pytest.approx(0.05), "worst_decile_return": -0.4, "params_added": 25.0}
    cands = [
        {"mean_return": 0.30, "worst_decile_return": 0.00, "params_added": 500.0},  # best mean, costly
        {"mean_return": 0.25, "worst_decile_return": 0.10, "params_added": 100.0},  # balanced
        {"mean_return": 0.20, "worst_decile_return": 0.05, "params_added": 200.0},  # dominated by 1
        {"mean_return": 0.10, "worst_decile_return": 0.02, "params_added": 0.0},  # cheapest
    ]
    F = objective_matrix(cands)
    assert F[0].tolist() == [-0.30, -0.00, 500.0]
    sel = select(cands)
    assert sel.ranks.tolist() == [0, 0, 1, 0]
    assert set(sel.frontier()) == {0, 1, 3}
    assert sel.order[-1] == 2
    # Scores over the front (normalised, weights .5/.3/.2):
    # c0 = .5 + 0 + 0, c1 = .5*.75 + .3 + .2*.8, c3 = 0 + .3*.2 + .2
    assert sel.scores[1] == pytest.approx(0.5 * 0.75 + 0.3 + 0.2 * 0.8)
    assert sel.chosen == 1
    assert select(cands, {"mean_return": 1.0}).chosen == 0
    assert select(cands, {"params_added": 1.0}).chosen == 3
    with pytest.raises(ValueError):
        select(cands, {"speed": 1.0})
    with pytest.raises(ValueError):
        select([])
