"""Process-wide settings of the Python runtime for the long-running stages.

The processors and the sink hold large heaps of small, acyclic objects (table states,
decoded records, batches) and allocate millions more per minute. With CPython's default
collector thresholds (a young-generation pass every 700 net allocations) the collector
walked those heaps so often that it cost a third of a worker's time: measured with
``python bench/stage_cost_bench.py``, 82 -> 52 us per event over the three stages with
the thresholds below, against 52 with the collector off. Cycles are rare in this data,
so collecting less often costs little memory.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

GEN0_THRESHOLD = 50_000


def tune_gc(gen0: int = GEN0_THRESHOLD) -> None:
    """Collect less often, and move what exists now (modules, settings, recovered state)
    out of the collector's sight (``gc.freeze``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, 20, 100)
