"""Sum-tree: exact sums, sampling reaches every item (the newest too), never an empty slot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tamiyo.replay_store.sum_tree import SumMinTree


def _fresh_copy(tree: SumMinTree) -> SumMinTree:
    rebuilt = SumMinTree(tree.capacity)
    rebuilt.rebuild(tree.leaves())
    return rebuilt


@pytest.mark.parametrize("capacity", [1, 7, 1000, 100_000])
def test_sums_stay_exact_after_many_random_updates(capacity: int) -> None:
    rng = np.random.default_rng(0)
    tree = SumMinTree(capacity)
    for step in range(300):
        idx = rng.integers(0, capacity, size=int(rng.integers(1, 200)))
        values = rng.exponential(1.0, idx.size) * (rng.random(idx.size) > 0.1)  # some zeros: emptied slots
        tree.set(idx, values)
        if step % 37 == 0:
            _ = tree.total  # interleave reads: propagation happens lazily in between
    # Parents are recomputed, never patched with deltas: incremental == rebuilt from the leaves, bit for bit.
    assert np.array_equal(tree.nodes(), _fresh_copy(tree).nodes())
    leaves = tree.leaves()
    assert tree.total == pytest.approx(math.fsum(leaves), rel=1e-12, abs=0)
    positive = leaves[leaves > 0]
    assert tree.min == (positive.min() if positive.size else math.inf)


def test_repeated_index_last_write_wins() -> None:
    tree = SumMinTree(10)
    tree.set(np.array([3, 5, 3, 3]), np.array([1.0, 2.0, 7.0, 4.0]))
    assert tree.get(np.array([3, 5])).tolist() == [4.0, 2.0]
    assert tree.total == 6.0


def test_invalid_values_and_indices_raise() -> None:
    tree = SumMinTree(10)
    with pytest.raises(ValueError):
        tree.set(np.array([1]), np.array([np.nan]))
    with pytest.raises(ValueError):
        tree.set(np.array([1]), np.array([-1.0]))
    with pytest.raises(ValueError):
        tree.set(np.array([1]), np.array([np.inf]))
    with pytest.raises(IndexError):
        tree.set(np.array([10]), np.array([1.0]))
    with pytest.raises(ValueError):
        tree.find_prefix(np.array([0.0]))  # empty tree


@pytest.mark.parametrize("capacity", [1, 2, 5, 8, 100, 4097, 100_000])
def test_stratified_sampling_reaches_every_item_including_the_newest(capacity: int) -> None:
    tree = SumMinTree(capacity)
    tree.set(np.arange(capacity), np.ones(capacity))
    # Equal priorities, one stratum per item: each stratum maps onto exactly its own item.
    drawn = tree.sample_stratified(capacity, np.random.default_rng(1))
    assert drawn.max() == capacity - 1
    assert np.unique(drawn).size >= capacity - 2  # round-off may move a draw across a stratum edge, no more
    # All mass on the newest (last) slot: every draw must land there.
    tree.set(np.arange(capacity - 1), np.zeros(capacity - 1))
    assert (tree.sample_stratified(64, np.random.default_rng(2)) == capacity - 1).all()


class _RngOfOnes:
    """A generator whose uniforms are all 1.0: pushes every draw to its stratum's top edge."""

    def random(self, size: int) -> np.ndarray:
        return np.ones(size)


@pytest.mark.parametrize("filled", [1, 3, 1000, 70_001])
def test_draws_at_the_total_never_land_on_an_empty_slot(filled: int) -> None:
    tree = SumMinTree(100_000)
    tree.set(np.arange(filled), np.random.default_rng(3).random(filled) + 1e-3)
    drawn = tree.sample_stratified(128, _RngOfOnes())  # type: ignore[arg-type]  # a stub: only .random is used
    assert (drawn < filled).all()
    assert (tree.get(drawn) > 0).all()
    total = tree.total
    beyond = np.array([total, np.nextafter(total, np.inf), total * (1 + 1e-12), 2 * total])
    drawn = tree.find_prefix(beyond)
    assert (drawn == filled - 1).all()  # clamped onto the last positive slot


def test_round_off_stress_with_wild_magnitudes_and_holes() -> None:
    rng = np.random.default_rng(4)
    for trial in range(20):
        capacity = int(rng.integers(2, 20_000))
        tree = SumMinTree(capacity)
        values = 10.0 ** rng.uniform(-12, 6, capacity)
        values[rng.random(capacity) < 0.5] = 0.0  # holes everywhere
        values[-1] = 0.0 if trial % 2 else values[-1]
        if not (values > 0).any():
            values[0] = 1.0
        tree.set(np.arange(capacity), values)
        total = tree.total
        masses = np.concatenate(
            [rng.random(4096) * total, total * (1 - 10.0 ** -rng.uniform(0, 16, 512)), np.full(8, total)]
        )
        drawn = tree.find_prefix(masses)
        assert (tree.get(drawn) > 0).all()


def test_safe_descent_only_enters_positive_subtrees() -> None:
    tree = SumMinTree(8192)  # 2 binary levels below the 2,048-node jump level: 4 slots per jump node
    tree.set(np.array([8, 9, 10, 11]), np.array([0.0, 1.0, 0.0, 0.0]))
    tree.set(np.array([12, 14]), np.array([1.0, 2.0]))
    tree.nodes()  # propagate
    # Jump node 2048 + 2 covers slots 8..11, jump node 2048 + 3 covers slots 12..15.
    nodes = np.array([2050, 2050, 2050, 2051, 2051, 2051, 2051])
    mass = np.array([0.0, 0.7, 5.0, 0.0, 0.99, 1.5, 9.0])
    drawn = tree._safe_descent(nodes, mass)
    assert drawn.tolist() == [9, 9, 9, 12, 12, 14, 14]  # never 8, 10, 11, 13 or 15 (empty)


def test_a_writer_that_never_reads_keeps_pending_writes_bounded() -> None:
    tree = SumMinTree(50_000)
    rng = np.random.default_rng(6)
    for _ in range(400):
        tree.set(rng.integers(0, 50_000, 64), rng.random(64))
        assert tree._pending <= 8192 + 64
    assert np.array_equal(tree.nodes(), _fresh_copy(tree).nodes())
