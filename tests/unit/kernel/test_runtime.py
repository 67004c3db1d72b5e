"""The heap keeper (kernel.runtime.Heap): what is alive at a window's end leaves the
collector's sight, and cyclic garbage frozen while alive is freed by the next full pass."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kernel.runtime import Heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> _Node:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    gc.collect()
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settle_freezes_what_is_alive() -> None:
    heap = Heap(full_interval_s=60, clock=_Clock())
    before = gc.get_freeze_count()
    kept = [{"state": [i]} for i in range(1000)]
    heap.settle()
    assert gc.get_freeze_count() >= before + 1000  # the states and their lists
    assert heap.full_passes == 0
    del kept


def test_a_cycle_frozen_while_alive_is_freed_by_the_next_full_pass() -> None:
    clock = _Clock()
    heap = Heap(full_interval_s=60, clock=clock)
    cycle = _cycle()
    heap.settle()  # frozen while alive
    del cycle  # garbage now, but out of the collector's sight
    assert gc.collect() == 0
    clock.now = 59.0
    heap.settle()
    assert heap.full_passes == 0
    clock.now = 60.0
    heap.settle()  # due: thaw, collect, freeze
    assert heap.full_passes == 1
    assert heap.collected_total >= 2  # both nodes
    assert heap.full_seconds_total > 0


def test_the_interval_restarts_after_a_full_pass() -> None:
    clock = _Clock()
    heap = Heap(full_interval_s=10, clock=clock)
    clock.now = 10.0
    heap.settle()
    clock.now = 15.0
    heap.settle()
    assert heap.full_passes == 1
    clock.now = 20.0
    heap.settle()
    assert heap.full_passes == 2


def test_the_full_passes_are_metrics() -> None:
    from processors.metrics import HeapCollector

    clock = _Clock()
    heap = Heap(full_interval_s=1, clock=clock)
    clock.now = 1.0
    heap.settle()
    samples = {s.name: s.value for family in HeapCollector(heap).collect() for s in family.samples}
    assert samples["logflume_gc_full_passes_total"] == 1
    assert samples["logflume_gc_full_seconds_total"] > 0
    assert samples["logflume_gc_collected_total"] == heap.collected_total
