"""Process-wide settings of the Python runtime for the long-running stages.

The processors and the sink hold large heaps of small, acyclic objects (table states,
decoded records, batches) and allocate millions more per minute. With CPython's default
collector thresholds (a young-generation pass every 700 net allocations) the collector
walked those heaps so often that it cost a third of a worker's time: measured with
``python bench/stage_cost_bench.py``, 82 -> 52 us per event over the three stages with
the thresholds below, against 52 with the collector off. Cycles are rare in this data,
so collecting less often costs little memory.

Even so, every object that outlives a young pass is walked once more by it and again by
the middle generation's passes: ~14% of the pure stages' time (7.6 of 55 us per event,
``gc.callbacks`` over ``bench/stage_cost_bench.py``'s stream), nearly all of it spent on
states that live on. :class:`Heap` takes what is alive at the end of each output window
out of the collector's sight (``gc.freeze``: a list splice, no walk) and collects the
whole heap on a timer instead. A freeze takes cyclic garbage not yet collected along with
the living (and resets the young generation's count, so automatic passes become rare): all
the cycles a process drops are freed at the next full pass, so what they hold is bounded by
what one interval makes (``logflume_gc_collected_total`` counts them).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

__all__ = ["HEAP", "Heap", "tune_gc"]

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 50_000
FULL_INTERVAL_S = 300.0


def tune_gc(gen0: int = GEN0_THRESHOLD) -> None:
    """Collect less often, and move what exists now (modules, settings, recovered state)
    out of the collector's sight (``gc.freeze``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, 20, 100)


class Heap:
    """The collector's view of a stage process's heap: young objects only.

    :meth:`settle` is called once per output window (live agents and the sequential
    stages alike): what is alive then is frozen, so the collector's automatic passes walk
    only what the next window allocates. Every ``full_interval_s`` it also thaws the heap and
    collects it whole (the pause of one full pass, as CPython's own oldest-generation pass
    would cost), which bounds the cyclic garbage held (frozen alive or already dead) to
    what one interval makes."""

    def __init__(
        self,
        full_interval_s: float = FULL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full_interval_s = full_interval_s
        self._clock = clock
        self._last_full = clock()
        self.full_passes = 0
        self.collected_total = 0  # unreachable objects the full passes freed
        self.full_seconds_total = 0.0

    def settle(self) -> None:
        """The end of a window: freeze what is alive; a full pass when one is due."""
        if self._clock() - self._last_full >= self.full_interval_s:
            self.collect_all()
        else:
            gc.freeze()

    def collect_all(self) -> int:
        """Thaw, collect every generation, freeze the survivors; the objects freed."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        seconds = time.perf_counter() - started
        self._last_full = self._clock()
        self.full_passes += 1
        self.collected_total += found
        self.full_seconds_total += seconds
        log.info("full collection: %d unreachable objects freed in %.0f ms", found, seconds * 1e3)
        return found


HEAP = Heap()  # the process's (the collector is process-wide)
