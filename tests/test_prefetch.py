"""Running an iterator ahead in a thread: order, errors where they happen, early stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hashmatch.media.prefetch import Prefetched, prefetched


def test_items_arrive_in_order_and_all() -> None:
    assert list(prefetched(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(prefetched(iter([]))) == []


def test_the_producers_error_is_raised_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("broken frame")

    seen = []
    with pytest.raises(ValueError, match="broken frame"):
        for item in prefetched(failing()):
            seen.append(item)
    assert seen == [1, 2]


def test_stopping_early_closes_the_source_and_ends_the_thread() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    source = Prefetched(endless(), depth=2)
    for item in source:
        if item == 5:
            break
    assert closed.wait(5) and not source._thread.is_alive()


def test_the_producer_runs_at_most_depth_items_ahead() -> None:
    produced: list[int] = []

    def counting() -> Iterator[int]:
        for n in range(100):
            produced.append(n)
            yield n

    source = Prefetched(counting(), depth=3)
    iterator = iter(source)
    assert next(iterator) == 0
    source._thread.join(timeout=0.5)  # give it time to run ahead as far as it may
    assert len(produced) <= 1 + 3 + 1  # the one taken, the queue, the one waiting to go in
    source.close()


def test_depth_is_checked() -> None:
    with pytest.raises(ValueError):
        Prefetched(iter([1]), depth=0)
