"""The bounded queue between callers and the worker."""

from __future__ import annotations

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
