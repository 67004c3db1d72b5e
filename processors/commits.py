"""A fix to faust-streaming's offset commits: never commit past a record not yet acknowledged
(faust-streaming issue 606, open; the rare record loss the fault soak found).

**The loss.** Faust commits, per partition, the end of the first run of consecutive
acknowledged offsets. Its guard against a run that does not start at the committed offset
(the next record to read) is off by one: ``min(acked) - committed > 1``. A run starting one
past it passes, and the record *at* the committed offset is committed past without being
processed. It needs that record to be acknowledged after the one behind it, which the
pipeline's in-order streams do only around a rebalance: a batch fetched before the
post-rebalance seek reached the stream after it, its first record (committed + 1) was
acknowledged ahead of the record at the committed offset, and one raw record (~20 events)
was never processed. ``scripts/soak_faults.py`` found it as a run that "settled wrong"
(seed 2003, about 1 fault run in 40). The guard also skipped a committed offset of 0 (a
falsy number).

**The fix.** A run is committable only when it starts at the committed offset; offsets that
do not exist (a compacted topic's, which Faust records as gaps when the stream skips them)
are folded in first, as Faust does. Otherwise nothing is committed yet, and:

- the record at the committed offset is in flight (delivered, not yet acknowledged) or not
  read yet: it will be, and the run then commits;
- the stream has read past it without it (the stale batch above: Faust's reader drops a
  record below the offset it last delivered, and keeps handing out the rest of a batch it
  fetched before a seek, so seeking back from here is not enough): the log's start is
  asked (on the consumer's own thread). Below it, the record is gone (retention) and
  counts as a gap, Faust's rule; otherwise the worker exits at once without committing
  (status 75, as the watchdog does), and its restart, or the partition's next owner, reads
  on from the committed offset with a fresh consumer.

At least once, never a record skipped. Without a committed offset (a new group), Faust's
own rule stands. The watchdog's commit rule (:mod:`processors.liveness`) is the last net.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

__all__ = ["EX_REREAD", "committable_offset", "patch_faust_commits"]

log = logging.getLogger(__name__)

EX_REREAD = 75  # the watchdog's status: restart me, nothing was committed past


def committable_offset(acked: list[int], committed: int | None) -> int | None:
    """The offset to commit (the next to read) for the sorted acknowledged offsets
    ``acked`` (gaps folded in), or None when nothing may be committed; the run returned is
    removed from ``acked``."""
    if not acked:
        return None
    if committed is not None and acked[0] != committed:
        return None  # the record at the committed offset is not acknowledged yet
    end = 1
    while end < len(acked) and acked[end] == acked[end - 1] + 1:
        end += 1
    new_offset = acked[end - 1] + 1
    del acked[:end]
    return new_offset


def _new_offset(self: Any, tp: Any) -> int | None:
    """``faust.transport.consumer.Consumer._new_offset`` with the fixed head guard."""
    acked: list[int] = self._acked[tp]
    if not acked:
        return None
    max_offset = max(acked)
    gaps = self._gap[tp]
    if gaps:  # offsets that do not exist count as acknowledged (as in Faust)
        missing: list[int] = []
        for interval in sorted(gaps.overlap(0, max_offset), key=lambda i: i.begin):
            missing.extend(range(interval.begin, interval.end))
        if missing:
            acked.extend(offset for offset in missing if offset not in self._acked_index[tp])
            gaps.chop(0, max(missing[-1], max_offset + 1))
    acked.sort()
    committed = self._committed_offset[tp]
    if committed is not None and acked[0] < committed:  # already committed: drop them
        kept = [offset for offset in acked if offset >= committed]
        self._acked_index[tp].difference_update(o for o in acked if o < committed)
        acked[:] = kept
    if committed is not None and acked and acked[0] > committed:
        if _missing_head(self, tp, committed):
            acked.insert(0, committed)  # deleted by retention: a gap, as Faust would have it
    head = acked[:]
    new_offset = committable_offset(acked, committed)
    if new_offset is not None:
        self._acked_index[tp].difference_update(head[: len(head) - len(acked)])
    return new_offset


def _passed_without(self: Any, tp: Any, committed: int) -> bool:
    """The stream read past ``committed`` and the record there is not in flight."""
    read = self._read_offset.get(tp)
    if read is None or read <= committed:
        return False  # not read yet: on its way
    return not any(m.tp == tp and m.offset == committed for m in self._unacked_messages)


def _missing_head(self: Any, tp: Any, committed: int) -> bool:
    """The record at ``committed`` is not acknowledged while later ones are. True when it
    is known to be gone (below the log's start); when the stream read past it, the log's
    start is asked in the background (:func:`_check_head`)."""
    if not _passed_without(self, tp, committed):
        return False
    state: dict[str, Any] = self.__dict__.setdefault("_logflume_heads", {"starts": {}})
    start = state["starts"].get(tp)
    if start is not None and committed < start:
        return True
    if state.get(tp) != committed:
        state[tp] = committed
        task = asyncio.ensure_future(_check_head(self, tp, committed))
        _checking.add(task)
        task.add_done_callback(_checking.discard)
    return False


_checking: set[asyncio.Future[None]] = set()


async def _check_head(self: Any, tp: Any, committed: int) -> None:
    state = self.__dict__["_logflume_heads"]
    try:
        starts = await self.earliest_offsets(tp)
    except Exception as exc:  # asked again at the next commit
        log.info("%s:%d: log start not known (%r)", tp.topic, tp.partition, exc)
        state.pop(tp, None)
        return
    start = starts.get(tp)
    if start is not None and committed < start:
        state["starts"][tp] = start  # the next commit counts it as a gap
        return
    if self._committed_offset[tp] != committed or not _passed_without(self, tp, committed):
        state.pop(tp, None)  # it came meanwhile, or the partition moved on
        return
    log.critical(
        "%s:%d: the stream read past offset %d without it (a batch fetched before a seek); "
        "exiting without commit (status %d) to read on from the committed offset",
        tp.topic, tp.partition, committed, EX_REREAD,
    )  # fmt: skip
    _end_worker()


def _end_worker() -> None:
    logging.shutdown()
    os._exit(EX_REREAD)


def patch_faust_commits() -> None:
    """Install the fix on Faust's consumer (idempotent)."""
    from faust.transport.consumer import Consumer

    cls: Any = Consumer
    if getattr(cls, "_logflume_commits_patched", False):
        return
    cls._faust_new_offset = cls._new_offset  # Faust's own, kept for the tests to compare
    cls._new_offset = _new_offset
    cls._logflume_commits_patched = True
