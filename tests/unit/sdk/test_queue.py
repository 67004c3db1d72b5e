"""The bounded queue between callers and the worker."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from producers.sdk.queue import EventQueue


def item(n: int) -> tuple[str, float, dict[str, int], tuple[str, ...]]:
    return ("log", 0.0, {"n": n}, ())


def test_bounded_by_count_and_fifo() -> None:
    queue = EventQueue(3, 10**9, wake_at=100)
    assert [queue.put(item(i)) for i in range(5)] == [True, True, True, False, False]
    assert [it[2]["n"] for it in queue.drain(10)] == [0, 1, 2]
    assert queue.put(item(9))


def test_byte_bound_follows_the_measured_event_size() -> None:
    queue = EventQueue(1_000_000, 100_000, wake_at=100)
    for _ in range(50):
        queue.observe(50 * 2000, 50)  # the worker saw 2 KB events
    assert 45 <= queue.limit <= 60
    for _ in range(50):
        queue.observe(50 * 100, 50)  # then small ones
    assert queue.limit >= 900


def test_wakes_once_per_batch() -> None:
    calls: list[int] = []
    queue = EventQueue(1000, 10**9, wake_at=10, wake=lambda: calls.append(1))
    for i in range(25):
        queue.put(item(i))
    assert len(calls) == 1
    queue.drain(100)
    for i in range(10):
        queue.put(item(i))
    assert len(calls) == 2


def test_close_refuses_everything() -> None:
    queue = EventQueue(10, 10**9, wake_at=5)
    queue.close()
    assert not queue.put(item(0))
    queue.observe(1000, 1)
    assert not queue.put(item(0))


class _RacingItems(deque):  # type: ignore[type-arg]
    """The queue's deque, with what other threads do around a caller's append."""

    def __init__(self, before: Callable[[], None], after: Callable[[], None]) -> None:
        super().__init__()
        self.before, self.after = before, after

    def append(self, item: object) -> None:
        self.before()
        super().append(item)
        self.after()


def test_a_put_that_races_close_after_the_last_drain_takes_its_item_back() -> None:
    # The caller passed the limit check; then close() and the worker's last drain ran; then
    # the caller appended. Nothing would ever take that item: put must say it was refused
    # (the client counts it as dropped, "closed"), not accepted.
    queue = EventQueue(100, 10**9, wake_at=1000)
    drained: list[object] = []

    def close_and_drain() -> None:
        queue.close()
        drained.extend(queue.drain(100))

    queue._items = _RacingItems(before=close_and_drain, after=lambda: None)
    assert queue.put(item(1)) is False
    assert len(queue) == 0 and drained == []


def test_a_put_that_races_close_before_the_last_drain_is_accepted() -> None:
    # close() ran before the append and the worker's last drain right after it: the drain
    # has the item, so it was accepted.
    queue = EventQueue(100, 10**9, wake_at=1000)
    drained: list[object] = []
    queue._items = _RacingItems(before=queue.close, after=lambda: drained.extend(queue.drain(100)))
    assert queue.put(item(1)) is True
    assert drained == [item(1)] and len(queue) == 0
