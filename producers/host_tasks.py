"""The classification tasks host-train learns: an offline, seeded task distribution.

A task is drawn from an rng: either scikit-learn's ``load_digits`` restricted
to a random subset of classes, or a ``make_classification`` problem with
random size, class count, cluster structure and separation.  Features are
standardized with training statistics; the split is 75 / 25.  Held-out
tasks come from a disjoint rng stream (HostConfig.split), not from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.datasets import load_digits, make_classification

# The largest task draw_task makes (load_digits: 64 features, 10 classes, 1,797 samples; synthetic tasks are
# smaller): what batched hosts pad to.
MAX_FEATURES, MAX_CLASSES, MAX_SAMPLES = 64, 10, 1797
TRAIN_FRACTION = 0.75  # of a task's samples; the rest is its validation set


@dataclass(frozen=True)
class Task:
    name: str
    x_train: np.ndarray  # float32 [N, d]
    y_train: np.ndarray  # int64 [N]
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data.astype(np.float32), data.target.astype(np.int64)


def _digits_task(rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
    x, y = _digits()
    k = int(rng.integers(5, 11))
    classes = np.sort(rng.choice(10, size=k, replace=False))
    keep = np.isin(y, classes)
    relabel = np.full(10, -1, dtype=np.int64)
    relabel[classes] = np.arange(k)
    return f"digits-{k}", x[keep], relabel[y[keep]]


def _synthetic_task(rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
    n_features = int(rng.integers(12, 33))
    n_informative = int(rng.integers(4, min(12, n_features - 2) + 1))
    n_classes = int(rng.integers(3, 9))
    clusters = int(rng.integers(1, 4))
    while n_classes * clusters > 2**n_informative:  # sklearn's constraint
        clusters -= 1
    x, y = make_classification(
        n_samples=int(rng.integers(900, 1500)),
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=int(rng.integers(0, n_features - n_informative + 1) // 2),
        n_classes=n_classes,
        n_clusters_per_class=max(clusters, 1),
        class_sep=float(rng.uniform(0.7, 1.5)),
        flip_y=0.01,
        random_state=int(rng.integers(2**31 - 1)),
    )
    return f"synthetic-{n_classes}c-{n_features}f", x.astype(np.float32), y.astype(np.int64)


def draw_task(rng: np.random.Generator, digits_fraction: float = 0.3) -> Task:
    name, x, y = _digits_task(rng) if rng.random() < digits_fraction else _synthetic_task(rng)
    order = rng.permutation(len(y))
    n_train = int(TRAIN_FRACTION * len(y))
    tr, va = order[:n_train], order[n_train:]
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-6
    x = ((x - mean) / std).astype(np.float32)
    return Task(name, x[tr], y[tr], x[va], y[va], int(y.max()) + 1)
