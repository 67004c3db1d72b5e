"""Counters of what the client did with events, and the rate-limited warnings it logs.

Lost events are counted by reason, never logged one by one (OpenTelemetry's
BatchProcessor, Sentry's ``(category, reason)``). Warnings name a reason and a field, never a
payload, and each reason warns at most once per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["DropReason", "RateLimitedWarner", "SDKStats", "StatsRecorder"]

log = logging.getLogger(__name__)


class DropReason:
    """Why events were lost (the keys of :attr:`SDKStats.dropped`)."""

    INVALID = "invalid"  # broke the wire contract (or could not be serialized)
    QUEUE_FULL = "queue_full"  # overflow policy "drop": the in-memory queue was full
    SPOOL_FULL = "spool_full"  # the disk spool reached its size bound
    # Writing the spool failed (disk full, I/O error) and the event's frame did not reach the
    # file whole. Events written whole before the error stay in the spool and are sent from
    # it: they count as ``spooled``, then ``sent``, never here.
    SPOOL_ERROR = "spool_error"
    CLOSED = "closed"  # emitted after close()
    UNSENT_AT_CLOSE = "unsent_at_close"  # overflow "drop": still in memory when close() ended
    REJECTED_BY_BROKER = "rejected_by_broker"  # a non-retriable Kafka error (record too large)
    # Counted when a client opens the spool: a previous process using it ended without
    # closing (os._exit, SIGKILL) while these events were only in its memory.
    LOST_AT_EXIT = "lost_at_exit"


@dataclass(frozen=True, slots=True)
class SDKStats:
    """A snapshot of the client's counters.

    ``accepted`` counts the events the client took on to deliver: those its worker has taken
    from the queue and found valid, and those a full queue sent to the spool at the call.
    Events the wire contract refused (at the call or in the worker) are not in it: they are
    in ``dropped`` as ``invalid``. Each accepted event is then in flight, sent, spooled, or
    in ``dropped`` under another reason.
    ``sent`` counts events acknowledged by Kafka (directly or from the spool); ``spooled``
    counts events written to the disk spool (they are counted in ``sent`` once they are
    re-sent, and in ``resent_from_spool``); ``spool_bytes`` is the spool's size on disk.
    ``dropped`` counts lost *events* by reason (:class:`DropReason`), ``dropped_total`` their
    sum. ``spool_corrupt`` counts *regions*, not events: torn or damaged stretches of the
    spool skipped at read (a frame cut by a crash, a failed CRC, a segment without its
    header). How many events a region held cannot be known (its length fields may be what
    is damaged), so it is in neither ``dropped`` nor ``dropped_total``.
    """

    accepted: int
    sent: int
    spooled: int
    resent_from_spool: int
    dropped: Mapping[str, int]
    queued: int
    inflight: int
    spool_bytes: int
    invalid_fields: Mapping[str, int] = field(default_factory=dict)
    spool_corrupt: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class StatsRecorder:
    """The mutable counters. Callers' threads and the worker both write; a lock keeps counts
    exact (only the rare paths, overflow and rejection, take it on a caller's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = 0
        self.sent = 0
        self.spooled = 0
        self.resent_from_spool = 0
        self._dropped: Counter[str] = Counter()
        self._invalid_fields: Counter[str] = Counter()
        self.spool_corrupt = 0
        self._losses_reported = 0

    def add(self, *, accepted: int = 0, sent: int = 0, spooled: int = 0, resent: int = 0) -> None:
        with self._lock:
            self.accepted += accepted
            self.sent += sent
            self.spooled += spooled
            self.resent_from_spool += resent

    def drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._dropped[reason] += count

    def invalid(self, fields: tuple[str, ...]) -> None:
        with self._lock:
            self._dropped[DropReason.INVALID] += 1
            for name in fields:
                self._invalid_fields[name] += 1

    def corrupt(self, regions: int) -> None:
        with self._lock:
            self.spool_corrupt += regions

    def losses_since_last_call(self) -> int:
        """Losses counted since the previous call (since the recorder was built, for the
        first): events dropped for any reason but ``lost_at_exit`` (events a previous process
        lost, counted when this client opened its spool slot, before it accepted anything)
        plus corrupt spool regions. ``flush`` and ``close`` report on this window."""
        with self._lock:
            losses = sum(self._dropped.values()) - self._dropped[DropReason.LOST_AT_EXIT]
            losses += self.spool_corrupt
            new, self._losses_reported = losses - self._losses_reported, losses
            return new

    def snapshot(self, *, queued: int, inflight: int, spool_bytes: int) -> SDKStats:
        with self._lock:
            return SDKStats(
                accepted=self.accepted,
                sent=self.sent,
                spooled=self.spooled,
                resent_from_spool=self.resent_from_spool,
                dropped=MappingProxyType(dict(self._dropped)),
                queued=queued,
                inflight=inflight,
                spool_bytes=spool_bytes,
                invalid_fields=MappingProxyType(dict(self._invalid_fields)),
                spool_corrupt=self.spool_corrupt,
            )


class RateLimitedWarner:
    """At most one warning per key per interval; the next one says how many were suppressed."""

    def __init__(self, interval_s: float, logger: logging.Logger = log) -> None:
        self._interval = interval_s
        self._logger = logger
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warn(self, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless ``key`` warned less than an interval ago."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] += 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar warnings suppressed)"
            args = (*args, suppressed)
        self._logger.warning(msg, *args)
        return True
