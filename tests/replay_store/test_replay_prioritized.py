"""PrioritizedReplay: sampling distribution, IS weights, eviction order, stale updates, the staleness cap,
threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tamiyo.replay_store.prioritized import PrioritizedReplay
from tamiyo.replay_store.schedules import LinearBetaSchedule
from tamiyo.replay_store.storage import ItemMeta


def _chi_square(observed: np.ndarray, expected: np.ndarray) -> float:
    return float(np.sum((observed - expected) ** 2 / expected))


def _chi_square_critical(df: int, p: float) -> float:
    """The chi-square(df) value exceeded with probability ``p`` (scipy.stats)."""
    return float(stats.chi2.isf(p, df))


P_1E3, P_1E6 = 1e-3, 1e-6  # false-alarm rates of the fit and of the misfit checks


def _payloads(start: int, count: int) -> list[bytes]:
    return [f"item-{i}".encode() for i in range(start, start + count)]


def test_sampled_frequencies_match_priorities_chi_square() -> None:
    alpha, n = 0.6, 50
    replay = PrioritizedReplay(64, alpha=alpha, eps=0.0, seed=123)
    priorities = np.random.default_rng(7).uniform(0.05, 10.0, n)
    slots = replay.add(_payloads(0, n), priorities)
    counts = np.zeros(64)
    draws = 0
    for _ in range(400):
        sample = replay.sample(256)
        np.add.at(counts, sample.indices, 1)
        draws += 256
    expected = priorities**alpha / np.sum(priorities**alpha) * draws
    observed = counts[slots]
    assert observed.sum() == draws  # nothing outside the stored slots
    # Fixed seed: deterministic.  Stratified draws vary less than multinomial ones, so
    # the multinomial chi-square is conservative; p = 1e-3 keeps it far from flaky while
    # still rejecting e.g. alpha=1 (checked below).
    assert _chi_square(observed, expected) < _chi_square_critical(n - 1, P_1E3)
    wrong = priorities / priorities.sum() * draws
    assert _chi_square(observed, wrong) > _chi_square_critical(n - 1, P_1E6)


def test_independent_draws_through_the_tree_pass_a_calibrated_chi_square() -> None:
    # Stratified batches are less variable than multinomial draws (p-values near 1 above);
    # independent uniform masses make the chi-square test exactly calibrated.
    alpha, n, draws = 0.6, 200, 200_000
    replay = PrioritizedReplay(256, alpha=alpha, eps=0.0, seed=0)
    priorities = np.random.default_rng(11).exponential(1.0, n) + 1e-3
    slots = replay.add(_payloads(0, n), priorities)
    tree = replay.tree
    drawn = tree.find_prefix(np.random.default_rng(12).random(draws) * tree.total)
    observed = np.bincount(drawn, minlength=256)[slots]
    assert observed.sum() == draws
    expected = priorities**alpha / np.sum(priorities**alpha) * draws
    assert _chi_square(observed, expected) < _chi_square_critical(n - 1, P_1E3)  # fixed seeds: deterministic


def test_importance_weights_match_a_naive_computation() -> None:
    alpha, beta, eps = 0.7, 0.5, 1e-3
    replay = PrioritizedReplay(100, alpha=alpha, eps=eps, seed=5)
    priorities = np.random.default_rng(8).exponential(2.0, 80)
    slots = replay.add(_payloads(0, 80), priorities)
    sample = replay.sample(64, beta=beta)
    # Naive: P over all stored items, w = (N P)^-beta normalised by the largest possible weight.
    p = (np.abs(priorities) + eps) ** alpha
    probs = p / p.sum()
    weight_all = (80 * probs) ** (-beta)
    position = {int(s): i for i, s in enumerate(slots)}
    rows = np.array([position[int(i)] for i in sample.indices])
    np.testing.assert_allclose(sample.probabilities, probs[rows], rtol=1e-12)
    np.testing.assert_allclose(sample.weights, weight_all[rows] / weight_all.max(), rtol=1e-6)
    assert (sample.weights <= 1.0).all() and (sample.weights > 0).all()
    assert [int(b.decode().split("-")[1]) for b in sample.payloads] == rows.tolist()


def test_new_items_get_the_max_priority_seen() -> None:
    replay = PrioritizedReplay(10, alpha=1.0, eps=0.0, seed=0)
    replay.add(_payloads(0, 2), np.array([1.0, 5.0]))
    [slot] = replay.add(_payloads(2, 1))
    assert replay.tree.get(np.array([slot]))[0] == 5.0
    replay.update_priorities(np.array([0]), np.array([9.0]))
    [slot] = replay.add(_payloads(3, 1))
    assert replay.tree.get(np.array([slot]))[0] == 9.0


def test_capacity_wrap_around_evicts_oldest_first() -> None:
    replay = PrioritizedReplay(10, seed=0)
    added = 0
    for size in (3, 7, 4, 1, 6, 2):
        replay.add(_payloads(added, size), np.ones(size))
        added += size
    assert len(replay) == 10
    st = replay.storage
    stored = [p.decode() for p in st.payloads[st.slots_in_order()]]
    assert stored == [f"item-{i}" for i in range(added - 10, added)]
    assert st.evicted_total == added - 10
    drawn = {p.decode() for _ in range(50) for p in replay.sample(16).payloads}
    assert drawn <= set(stored)
    # A batch larger than the capacity keeps only its newest items.
    slots = replay.add(_payloads(100, 25))
    assert (slots[:15] == -1).all() and (slots[15:] >= 0).all()
    assert [p.decode() for p in st.payloads[st.slots_in_order()]] == [f"item-{i}" for i in range(115, 125)]


def test_byte_budget_evicts_and_evicted_items_are_never_sampled() -> None:
    replay = PrioritizedReplay(100, max_bytes=1000, seed=0)
    replay.add([bytes([i]) * 300 for i in range(3)])  # 900 bytes
    replay.add([b"\xff" * 250])  # 1150 > 1000: the oldest goes
    assert len(replay) == 3 and replay.storage.total_bytes == 850
    seen = {p[0] for _ in range(20) for p in replay.sample(8).payloads}
    assert seen == {1, 2, 255}
    assert replay.stats()["evicted_total"] == 1


def test_stale_priority_updates_are_dropped_by_key() -> None:
    replay = PrioritizedReplay(4, alpha=1.0, eps=0.0, seed=0)
    replay.add(_payloads(0, 4), np.ones(4))
    sample = replay.sample(4)
    replay.add(_payloads(4, 2), np.full(2, 3.0))  # overwrites the two oldest slots
    applied = replay.update_priorities(sample.indices, np.full(4, 100.0), sample.keys)
    alive = np.isin(sample.indices, [2, 3])
    assert applied == int(alive.sum())
    assert replay.stale_updates == 4 - applied
    leaves = replay.tree.get(np.arange(4))
    assert leaves[0] == 3.0 and leaves[1] == 3.0  # the newer items kept their own priorities
    assert (leaves[2:][np.isin([2, 3], sample.indices)] == 100.0).all()


def test_updates_to_empty_slots_are_ignored() -> None:
    replay = PrioritizedReplay(8, seed=0)
    replay.add(_payloads(0, 2))
    assert replay.update_priorities(np.array([5, 6]), np.array([1.0, 2.0])) == 0
    assert replay.tree.get(np.array([5, 6])).tolist() == [0.0, 0.0]


def test_bad_priorities_raise() -> None:
    replay = PrioritizedReplay(8, seed=0)
    with pytest.raises(ValueError):
        replay.add(_payloads(0, 2), np.array([1.0, np.nan]))
    replay.add(_payloads(0, 2))
    with pytest.raises(ValueError):
        replay.update_priorities(np.array([0]), np.array([np.inf]))
    with pytest.raises(IndexError):
        replay.update_priorities(np.array([8]), np.array([1.0]))
    with pytest.raises(ValueError):
        PrioritizedReplay(8).sample(4)  # empty


def test_duplicate_keys_are_ignored() -> None:
    replay = PrioritizedReplay(10, seed=0)
    first = replay.add(_payloads(0, 3), keys=[("a", 0), ("a", 1), ("b", 0)])
    again = replay.add(_payloads(3, 3), keys=[("a", 1), ("c", 0), ("c", 0)])
    assert (first >= 0).all()
    assert again[0] == -1 and again[1] >= 0 and again[2] == -1
    assert len(replay) == 4 and replay.stats()["duplicates_total"] == 2


def test_metadata_travels_with_samples() -> None:
    replay = PrioritizedReplay(10, seed=0)
    meta = ItemMeta(policy_versions=[4, 5, 6], lengths=[20, 20, 7], encodings=[2, 2, 1], raw_sizes=[900, 800, 6])
    replay.add(_payloads(0, 3), meta=meta)
    sample = replay.sample(30)
    columns = (sample.payloads, sample.policy_versions, sample.lengths, sample.encodings, sample.raw_sizes)
    for payload, version, length, encoding, raw_size in zip(*columns, strict=True):
        i = int(payload.decode().split("-")[1])
        assert version == 4 + i and length == [20, 20, 7][i]
        assert encoding == [2, 2, 1][i] and raw_size == [900, 800, 6][i]


def test_beta_schedule_anneals_from_start_to_end() -> None:
    schedule = LinearBetaSchedule(0.4, 1.0, steps=100)
    assert schedule(0) == 0.4
    assert schedule(50) == pytest.approx(0.7)
    assert schedule(100) == 1.0 and schedule(10_000) == 1.0


def test_one_writer_and_one_sampler_thread_do_not_corrupt_the_tree() -> None:
    capacity = 2000
    replay = PrioritizedReplay(capacity, max_bytes=capacity * 40, seed=0)
    replay.add(_payloads(0, 64))
    stop = time.monotonic() + 1.5
    errors: list[BaseException] = []
    bad_samples = 0

    def writer() -> None:
        rng, n = np.random.default_rng(1), 64
        try:
            while time.monotonic() < stop:
                sizes = rng.integers(1, 80, 32)
                replay.add([b"x" * int(s) for s in sizes], rng.exponential(1.0, 32))
                n += 32
        except BaseException as err:  # surfaced by the main thread
            errors.append(err)

    def sampler() -> None:
        nonlocal bad_samples
        rng = np.random.default_rng(2)
        try:
            while time.monotonic() < stop:
                sample = replay.sample(64, beta=0.6)
                bad_samples += int((sample.keys < 0).sum()) + sum(p is None for p in sample.payloads)
                replay.update_priorities(sample.indices, rng.exponential(1.0, 64), sample.keys)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer), threading.Thread(target=sampler)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors and bad_samples == 0
    tree, st = replay.tree, replay.storage
    fresh = PrioritizedReplay(capacity).tree
    fresh.rebuild(tree.leaves())
    assert np.array_equal(tree.nodes(), fresh.nodes())
    occupied = st.item_ids >= 0
    leaves = tree.leaves()
    assert (leaves[occupied] > 0).all() and (leaves[~occupied] == 0).all()
    assert st.total_bytes == int(st.nbytes.sum()) <= capacity * 40


def _meta(versions: list[int], first_sequence: int) -> ItemMeta:
    n = len(versions)
    return ItemMeta(
        producer_ids=["a"] * n, sequences=list(range(first_sequence, first_sequence + n)), policy_versions=versions
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(1, 6)), min_size=1, max_size=12),
    st.lists(st.integers(0, 40), min_size=1, max_size=6),
)
def test_retired_items_are_never_sampled_or_revived_and_the_retired_prefix_is_freed(puts, bounds) -> None:
    """Against a naive model: the sampleable items are exactly the stored ones at or above the bound."""
    replay = PrioritizedReplay(16, alpha=1.0, seed=0)
    sequence, bound = 0, 0
    for (version, count), new_bound in zip(puts, [*bounds, *[bounds[-1]] * len(puts)], strict=False):
        versions = [version + (i % 3) for i in range(count)]  # not sorted: a lagging actor's late unrolls
        replay.add(_payloads(sequence, count), meta=_meta(versions, sequence))
        sequence += count
        replay.retire_older_than(new_bound)
        bound = max(bound, new_bound)
        st_ = replay.storage
        order = st_.slots_in_order()
        live = order[st_.policy_versions[order] >= bound]
        # The naive answer: a slot can be sampled iff it holds an item at or above the bound.
        assert set(np.flatnonzero(replay.tree.leaves() > 0).tolist()) == set(live.tolist())
        assert replay.live_count() == live.size
        if len(st_):  # the oldest remaining item is not retired: the retired prefix was freed
            assert st_.policy_versions[st_.head] >= bound
        if live.size:
            sample = replay.sample(32)
            assert (sample.policy_versions >= bound).all()
        # A priority update cannot bring a retired item back.
        if len(st_):
            replay.update_priorities(order, np.full(order.size, 5.0), st_.item_ids[order])
            assert set(np.flatnonzero(replay.tree.leaves() > 0).tolist()) == set(live.tolist())


def test_an_item_made_by_an_already_retired_policy_is_stored_but_never_sampled() -> None:
    replay = PrioritizedReplay(8, seed=0)
    replay.add(_payloads(0, 2), meta=_meta([10, 10], 0))
    assert replay.retire_older_than(5) == 0 and replay.retire_older_than(3) == 0  # the bound only rises
    replay.add(_payloads(2, 1), meta=_meta([4], 2))
    assert len(replay) == 3 and replay.live_count() == 2 and replay.stats()["retired_total"] == 1
    assert set(replay.sample(64).policy_versions.tolist()) == {10}


def test_a_replay_whose_items_are_all_retired_refuses_to_sample() -> None:
    replay = PrioritizedReplay(8, seed=0)
    replay.add(_payloads(0, 2), meta=_meta([5, 1], 0))
    replay.retire_older_than(6)
    assert len(replay) == 0  # both were a retired prefix: freed
    replay.add(_payloads(2, 2), meta=_meta([7, 2], 2))
    replay.retire_older_than(8)
    with pytest.raises(ValueError, match="retired"):
        replay.sample(4)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 6), st.lists(st.tuples(st.integers(0, 7), st.booleans()), max_size=5)),
        min_size=1,
        max_size=10,
    )
)
def test_evicted_items_are_never_sampled_or_revived_until_their_slot_is_refilled(steps) -> None:
    """Against a naive model (a set of evicted item keys): a slot can be sampled iff it holds an item whose key
    was never evicted; an eviction naming a slot's previous item (stale key) leaves the new item alone."""
    replay = PrioritizedReplay(8, alpha=1.0, seed=0)
    evicted_keys: set[int] = set()
    sequence = 0
    for count, evictions in steps:
        replay.add(_payloads(sequence, count), meta=_meta([0] * count, sequence))
        sequence += count
        st_ = replay.storage
        for slot, stale in evictions:
            key = int(st_.item_ids[slot]) - (1 if stale else 0)  # stale: the key this slot's previous item had
            live_target = int(st_.item_ids[slot]) >= 0 and not stale
            before = replay.rejected_total
            replay.evict([slot], [key])
            if live_target and key not in evicted_keys:
                evicted_keys.add(key)
                assert replay.rejected_total == before + 1
            else:
                assert replay.rejected_total == before
        order = st_.slots_in_order()
        live = order[~np.isin(st_.item_ids[order], list(evicted_keys))]
        assert set(np.flatnonzero(replay.tree.leaves() > 0).tolist()) == set(live.tolist())
        assert replay.live_count() == live.size
        if live.size:
            assert not np.isin(replay.sample(32).keys, list(evicted_keys)).any()
        replay.update_priorities(order, np.full(order.size, 5.0), st_.item_ids[order])  # cannot revive them
        assert set(np.flatnonzero(replay.tree.leaves() > 0).tolist()) == set(live.tolist())


def test_eviction_checks_its_arguments() -> None:
    replay = PrioritizedReplay(4, seed=0)
    with pytest.raises(IndexError):
        replay.evict([4], [0])
    with pytest.raises(ValueError, match="keys must match"):
        replay.evict([0, 1], [0])
    assert replay.evict([], []) == 0
