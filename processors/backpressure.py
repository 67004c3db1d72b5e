"""Two fixes to faust-streaming's fetch loop: a worker whose stream buffer was full reads on
as soon as it drains, not up to a second later.

**Back-pressure.** Faust stops handing out a partition whose stream buffer is under
pressure (``stream_buffer_maxsize``: 4,096 records, pressure at 3,276) and takes it back
once the buffer is down to 1,638 (``Consumer.on_buffer_drop``). Its fetch loop asks the
consumer thread for records of the partitions active *when the call starts*, waiting up to
1 s (``getmany(timeout=1.0)``; :func:`processors.worker.patch_faust_consumer` hands the
thread a copy of that set, for the reasons given there). A partition taken back during
that wait is not asked for until the wait ends: the records aiokafka already holds for it
sit there for up to a second, while the stage that drained them has nothing to do. And
when *every* partition of the worker is so paused, the loop does not ask at all and
``sleep(1)`` (``Consumer._wait_next_records``; faust-streaming 0.15.3 and its main branch).

**Measured** (stop 40, ``bench/pipeline_bench.py``'s one-event-per-record design: 8,284
records of one event each): a worker's first fetch of the burst returned 3,130 records, its
buffer went over the pressure mark, and the next call, without that partition, waited out
its full second: the first record reduced 0.85-1.0 s after it was emitted, the run 1.9-2.0 s
at ~0.7 of 2 cores busy, against 0.85 s in runs where the timing missed the window. Packed
records (the SDK's, ~20 events each) rarely fill a buffer; a worker catching up on a
backlog of them does, once per 3,276 records.

**The fixes.** The consumer thread's wait is capped at the stages' ``fetch_wait_ms`` (50
ms by default) where the copy is made (:func:`processors.worker.patch_faust_consumer`, the
bound set by :func:`processors.worker.patch_faust_fetch_wait`), so a partition taken back is
asked for within it; an idle worker then makes ~20 cheap calls a second instead of one.
Here: a worker with no active partition at all waits for one to become active (a buffer
drained, a partition resumed or assigned), at most the second Faust slept.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["IDLE_WAIT_S", "patch_faust_paused_fetch"]

# The longest wait with nothing to fetch: Faust's own sleep, for a worker without partitions.
IDLE_WAIT_S = 1.0


def _fetchable(consumer: Any) -> asyncio.Event:
    """Set whenever a partition of ``consumer`` may have become fetchable again."""
    event = consumer.__dict__.get("_logflume_fetchable")
    if event is None:
        event = consumer.__dict__["_logflume_fetchable"] = asyncio.Event()
    return event  # type: ignore[no-any-return]


def _signalling(method: Any) -> Any:
    """``method`` of the consumer, then the consumer's fetchable event set."""

    def signalling(self: Any, *args: Any) -> Any:
        result = method(self, *args)
        _fetchable(self).set()
        return result

    return signalling


# The consumer's ways of making a partition fetchable again: a drained buffer, a resumed
# partition, a new assignment (Faust's own _get_active_partitions goes through the last).
_ACTIVATING = ("on_buffer_drop", "resume_partitions", "_set_active_tps")


def patch_faust_paused_fetch() -> None:
    """Install the fix on Faust's consumer (idempotent)."""
    from faust.transport.consumer import Consumer

    cls: Any = Consumer
    if getattr(cls, "_logflume_paused_fetch_patched", False):
        return
    wait_next_records = cls._wait_next_records

    async def waiting_next_records(self: Any, timeout: float) -> Any:
        if self.flow_active and not self.app.client_only and not self._get_active_partitions():
            fetchable = _fetchable(self)
            fetchable.clear()
            try:
                async with asyncio.timeout(IDLE_WAIT_S):
                    await fetchable.wait()
            except TimeoutError:
                pass
            active = self._get_active_partitions()
            if not active:  # still nothing to fetch: Faust's own answer after its sleep
                return {}, active
        return await wait_next_records(self, timeout)

    for name in _ACTIVATING:
        setattr(cls, name, _signalling(getattr(cls, name)))
    cls._wait_next_records = waiting_next_records
    cls._logflume_paused_fetch_patched = True
