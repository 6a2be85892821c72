"""The actor's outbox: bounded, FIFO; block refuses when full, drop-oldest makes room by dropping the oldest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tamiyo.producers.outbox import Outbox, OutboxFull


def test_block_refuses_a_full_outbox_and_keeps_order():
    box: Outbox[int] = Outbox(3, "block")
    for i in range(3):
        assert box.put(i) is None
    assert box.full and box.must_wait
    with pytest.raises(OutboxFull):
        box.put(3)
    assert [box.pop(), box.pop()] == [0, 1] and not box.must_wait
    assert box.put(3) is None and [box.pop(), box.pop()] == [2, 3]
    with pytest.raises(IndexError):
        box.pop()


def test_drop_oldest_never_waits_and_returns_what_it_dropped():
    box: Outbox[str] = Outbox(2, "drop-oldest")
    assert box.put("a") is None and box.put("b") is None
    assert box.full and not box.must_wait
    assert box.put("c") == "a" and box.put("d") == "b"
    assert len(box) == 2 and [box.pop(), box.pop()] == ["c", "d"]


@pytest.mark.parametrize(("capacity", "overflow"), [(0, "block"), (2, "drop-newest")])
def test_bad_settings_are_refused(capacity, overflow):
    with pytest.raises(ValueError):
        Outbox(capacity, overflow)


@given(st.integers(1, 8), st.lists(st.booleans(), max_size=60))
def test_drop_oldest_keeps_the_newest_items_in_order(capacity, ops):
    """Against a plain list model: put (True) / pop (False) in any order."""
    box: Outbox[int] = Outbox(capacity, "drop-oldest")
    model: list[int] = []
    dropped_model: list[int] = []
    dropped: list[int] = []
    for n, put in enumerate(ops):
        if put:
            if len(model) == capacity:
                dropped_model.append(model.pop(0))
            model.append(n)
            out = box.put(n)
            if out is not None:
                dropped.append(out)
        elif model:
            assert box.pop() == model.pop(0)
        assert len(box) == len(model) <= capacity
    assert dropped == dropped_model
