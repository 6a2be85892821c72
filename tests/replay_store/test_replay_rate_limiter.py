"""RateLimiter: Reverb's SampleToInsertRatio semantics, deterministically."""

from __future__ import annotations

import threading

import pytest

from tamiyo.replay_store.rate_limiter import RateLimiter


def test_sampling_waits_for_the_minimum_size() -> None:
    limiter = RateLimiter(min_size_to_sample=3, samples_per_insert=1.0, error_buffer=10.0)
    limiter.record_insert(2)
    assert not limiter.can_sample(1)
    limiter.record_insert(1)
    assert limiter.can_sample(1)
    limiter.record_delete(1)
    assert not limiter.can_sample(1)  # size fell below the minimum again


def test_samples_per_insert_ratio_within_the_error_buffer() -> None:
    # target diff = spi * min_size = 2 * 10 = 20; band [20 - 8, 20 + 8] = [12, 28].
    limiter = RateLimiter(min_size_to_sample=10, samples_per_insert=2.0, error_buffer=8.0)
    assert limiter.can_insert(10)  # filling up to the minimum is always allowed
    limiter.record_insert(10)  # diff = 20
    assert limiter.can_insert(4)  # diff would be 28: on the edge, allowed
    assert not limiter.can_insert(5)  # 30 > 28: the learner is behind, back-pressure
    assert limiter.can_sample(8)  # 20 - 8 = 12: allowed
    assert not limiter.can_sample(9)  # 11 < 12: the learner would run ahead
    limiter.record_sample(8)  # diff = 12
    assert not limiter.can_sample(1)
    assert limiter.can_insert(8)  # 12 + 16 = 28
    limiter.record_insert(1)  # diff = 14
    assert limiter.can_sample(2) and not limiter.can_sample(3)
    state = limiter.state()
    assert state["diff"] == 14 and state["inserts"] == 11 and state["samples"] == 8


def test_min_size_limiter_never_throttles_inserts() -> None:
    limiter = RateLimiter.min_size(5)
    limiter.record_insert(1_000_000)
    assert limiter.can_insert(1_000_000)
    assert limiter.can_sample(10_000_000)


def test_a_too_narrow_band_is_rejected() -> None:
    with pytest.raises(ValueError):
        RateLimiter(min_size_to_sample=1, samples_per_insert=4.0, error_buffer=2.0)


def test_blocked_sampler_is_woken_by_an_insert() -> None:
    limiter = RateLimiter(min_size_to_sample=1, samples_per_insert=1.0, error_buffer=1.0)
    assert not limiter.wait_can_sample(1, timeout=0.01)  # times out deterministically: nothing inserted
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limiter.wait_can_sample(1, timeout=10)))
    waiter.start()
    limiter.record_insert(1)
    waiter.join(timeout=10)
    assert result == [True]


def test_close_releases_waiters() -> None:
    limiter = RateLimiter(min_size_to_sample=1, samples_per_insert=1.0, error_buffer=1.0)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limiter.wait_can_sample(1, timeout=10)))
    waiter.start()
    limiter.close()
    waiter.join(timeout=10)
    assert result == [False]
    assert not limiter.wait_can_insert(1, timeout=None)
