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
  record below the offset it last delivered): the partition is sought back to the committed
  offset, so the record comes again (those behind it too; the stages are idempotent);
- after :data:`MAX_RESEEKS` seeks it still never came: it does not exist (a gap Faust did
  not record), and it counts as acknowledged, which is Faust's own rule.

If the commits stay held anyway, the watchdog (:mod:`processors.watchdog`) restarts the
worker, which resumes from the committed offset. At least once, never a record skipped.
Without a committed offset (a new group), Faust's own rule stands.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["MAX_RESEEKS", "committable_offset", "patch_faust_commits"]

log = logging.getLogger(__name__)

MAX_RESEEKS = 5  # seeks back to one missing head before it counts as a gap


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
            acked.insert(0, committed)  # it does not exist: a gap, as Faust would have it
    head = acked[:]
    new_offset = committable_offset(acked, committed)
    if new_offset is not None:
        self._acked_index[tp].difference_update(head[: len(head) - len(acked)])
    return new_offset


def _missing_head(self: Any, tp: Any, committed: int) -> bool:
    """The record at ``committed`` is not acknowledged while later ones are: wait for it,
    or seek back to it when the stream read past it without it. True when it came from
    none of :data:`MAX_RESEEKS` seeks (it does not exist)."""
    read = self._read_offset.get(tp)
    if read is None or read <= committed:
        return False  # not read yet: on its way
    if any(m.tp == tp and m.offset == committed for m in self._unacked_messages):
        return False  # in flight: acknowledged once its window is sent
    reseeks: dict[tuple[Any, int], int] = self.__dict__.setdefault("_logflume_reseeks", {})
    tries = reseeks.get((tp, committed), 0)
    if tries >= MAX_RESEEKS:
        log.error(
            "%s:%d: offset %d never came back after %d seeks; counted as a gap",
            tp.topic, tp.partition, committed, tries,
        )  # fmt: skip
        del reseeks[(tp, committed)]
        return True
    reseeks[(tp, committed)] = tries + 1
    log.warning(
        "%s:%d: the stream read past offset %d without it (a batch fetched before a seek); "
        "seeking back to it",
        tp.topic, tp.partition, committed,
    )  # fmt: skip
    task = asyncio.ensure_future(_seek(self, tp, committed))
    _seeking.add(task)
    task.add_done_callback(_seeking.discard)
    return False


_seeking: set[asyncio.Future[None]] = set()


async def _seek(self: Any, tp: Any, offset: int) -> None:
    try:
        await self.seek(tp, offset)
    except Exception as exc:  # revoked meanwhile: its next owner starts at the commit
        log.info("%s:%d: seek back to %d not done (%r)", tp.topic, tp.partition, offset, exc)


def patch_faust_commits() -> None:
    """Install the fix on Faust's consumer (idempotent)."""
    from faust.transport.consumer import Consumer

    cls: Any = Consumer
    if getattr(cls, "_logflume_commits_patched", False):
        return
    cls._faust_new_offset = cls._new_offset  # Faust's own, kept for the tests to compare
    cls._new_offset = _new_offset
    cls._logflume_commits_patched = True
