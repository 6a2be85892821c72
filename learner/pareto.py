"""Pareto selection of the snapshot to serve: NSGA-II fast non-dominated sort + crowding distance.

Pure numpy, no Kafka.  Internally every objective is *minimised*; objectives
to maximise are negated by `objective_matrix`.

- `dominates(a, b)`: a is no worse everywhere and strictly better somewhere.
- `fast_non_dominated_sort(F)`: Deb et al. (2002) — one dominance matrix
  (vectorised, O(M N²)), then fronts peeled by domination counts.  Identical
  points never dominate each other, so duplicates share a front.
- `crowding_distance(F)`: per objective, sort, give the two boundary points
  infinity and every interior point the normalised gap between its
  neighbours, summed over objectives.  Two rules make it well defined where
  the textbook version depends on input order:
  * **duplicates** are collapsed first and every copy gets the distance of
    its (single) point — identical candidates are indistinguishable;
  * **ties** on an objective are broken by the other objectives
    (lexicographically, in objective order), so the result does not depend on
    the order the candidates were given.
  An objective with zero range adds nothing to interior points.

Objectives of a candidate (from `tamiyo eval`-style results, see
`objectives_from_eval`): mean return (max), worst-decile return (max: the
mean of the lowest ceil(10%) per-task returns, a CVaR-style risk measure) and
parameter cost (min: mean parameters the controller added to the host).

`select` ranks by the crowded-comparison order (front, then larger crowding
distance) and picks, on the first front, the candidate with the best weighted
score of objectives min-max normalised over that front (ties: larger crowding
distance, then input order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

OBJECTIVES: tuple[tuple[str, str], ...] = (
    ("mean_return", "max"),
    ("worst_decile_return", "max"),
    ("params_added", "min"),
)
DEFAULT_WEIGHTS: dict[str, float] = {"mean_return": 0.5, "worst_decile_return": 0.3, "params_added": 0.2}


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True if ``a`` Pareto-dominates ``b`` (minimisation)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(a <= b) and np.any(a < b))


def _check(F: np.ndarray) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise ValueError(f"objective matrix must be 2-D [N, M], got shape {F.shape}")
    if not np.isfinite(F).all():
        raise ValueError("objective values must be finite")
    return F


def dominance_matrix(F: np.ndarray) -> np.ndarray:
    """``D[i, j]``: candidate i dominates candidate j."""
    F = _check(F)
    le = (F[:, None, :] <= F[None, :, :]).all(-1)
    lt = (F[:, None, :] < F[None, :, :]).any(-1)
    return np.asarray(le & lt)


def fast_non_dominated_sort(F: np.ndarray) -> list[np.ndarray]:
    """Fronts as arrays of row indices (ascending), best front first."""
    F = _check(F)
    n = F.shape[0]
    if n == 0:
        return []
    D = dominance_matrix(F)
    count = D.sum(axis=0)  # how many dominate j
    fronts: list[np.ndarray] = []
    current = np.flatnonzero(count == 0)
    while current.size:
        fronts.append(current)
        count = count - D[current].sum(axis=0)
        count[current] = -1  # assigned
        nxt = np.flatnonzero(count == 0)
        current = nxt
    return fronts


def ranks(F: np.ndarray) -> np.ndarray:
    """Front number (0 = non-dominated) of every row."""
    F = _check(F)
    out = np.empty(F.shape[0], dtype=np.int64)
    for r, front in enumerate(fast_non_dominated_sort(F)):
        out[front] = r
    return out


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of every row of ``F`` (usually one front); see the module docstring."""
    F = _check(F)
    n, m = F.shape
    if n == 0:
        return np.zeros(0)
    U, inverse = np.unique(F, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    k = U.shape[0]
    dist = np.zeros(k)
    if k <= 2:
        return np.full(n, math.inf)
    for j in range(m):
        # Primary key column j; ties broken by the other columns in order (np.lexsort: last key is primary).
        others = [U[:, c] for c in range(m) if c != j]
        order = np.lexsort((*reversed(others), U[:, j]))
        v = U[order, j]
        dist[order[0]] = dist[order[-1]] = math.inf
        span = v[-1] - v[0]
        if span > 0:
            dist[order[1:-1]] += (v[2:] - v[:-2]) / span
    return dist[inverse]


# ---------------------------------------------------------------- candidates


def worst_decile(returns: Sequence[float] | np.ndarray) -> float:
    """Mean of the lowest ceil(10%) returns (at least one)."""
    r = np.sort(np.asarray(returns, dtype=np.float64))
    if r.size == 0:
        raise ValueError("no returns")
    return float(r[: max(1, math.ceil(0.1 * r.size))].mean())


def objectives_from_eval(result: Mapping[str, Any]) -> dict[str, float]:
    """The three objectives from an `evaluate()` / `tamiyo eval` result (needs ``per_task``)."""
    per_task = result["per_task"]
    returns = [float(t["return"]) for t in per_task]
    return {
        "mean_return": float(np.mean(returns)),
        "worst_decile_return": worst_decile(returns),
        "params_added": float(np.mean([float(t["params_added"]) for t in per_task])),
    }


def objective_matrix(objectives: Sequence[Mapping[str, float]]) -> np.ndarray:
    """[N, M] matrix to minimise (maximised objectives negated), columns in `OBJECTIVES` order."""
    rows = [[(-o[name] if sense == "max" else o[name]) for name, sense in OBJECTIVES] for o in objectives]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(OBJECTIVES))


@dataclass
class Selection:
    chosen: int  # index into the candidates
    ranks: np.ndarray  # front of every candidate
    crowding: np.ndarray  # crowding distance within its own front
    scores: np.ndarray  # weighted normalised score (first front only; -inf elsewhere)
    order: list[int]  # crowded-comparison order, best first

    def frontier(self) -> list[int]:
        return [i for i in self.order if self.ranks[i] == 0]


def select(objectives: Sequence[Mapping[str, float]], weights: Mapping[str, float] | None = None) -> Selection:
    """Rank candidates (NSGA-II) and choose the one to serve; see the module docstring."""
    if not objectives:
        raise ValueError("no candidates")
    w = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(w) - {name for name, _ in OBJECTIVES}
    if unknown:
        raise ValueError(f"unknown objectives in weights: {sorted(unknown)}")
    F = objective_matrix(objectives)
    n = F.shape[0]
    rank = np.empty(n, dtype=np.int64)
    crowd = np.empty(n)
    for r, front in enumerate(fast_non_dominated_sort(F)):
        rank[front] = r
        crowd[front] = crowding_distance(F[front])
    order = sorted(range(n), key=lambda i: (rank[i], -crowd[i], i))
    first = np.flatnonzero(rank == 0)
    Ff = F[first]
    lo, hi = Ff.min(axis=0), Ff.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    goodness = 1.0 - (Ff - lo) / span  # 1 = best on that objective within the front (minimisation)
    wv = np.array([w.get(name, 0.0) for name, _ in OBJECTIVES])
    scores = np.full(n, -math.inf)
    scores[first] = goodness @ wv
    chosen = min(first.tolist(), key=lambda i: (-scores[i], -crowd[i], i))
    return Selection(chosen=int(chosen), ranks=rank, crowding=crowd, scores=scores, order=order)
