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
    SPOOL_ERROR = "spool_error"  # writing the spool failed (disk full, permissions)
    SPOOL_CORRUPT = "spool_corrupt"  # torn or corrupt spool frames skipped at read
    CLOSED = "closed"  # emitted after close()
    UNSENT_AT_CLOSE = "unsent_at_close"  # overflow "drop": still in memory when close() ended
    REJECTED_BY_BROKER = "rejected_by_broker"  # a non-retriable Kafka error (record too large)
    # Counted when a client opens the spool: a previous process using it ended without
    # closing (os._exit, SIGKILL) while these events were only in its memory.
    LOST_AT_EXIT = "lost_at_exit"


@dataclass(frozen=True, slots=True)
class SDKStats:
    """A snapshot of the client's counters.

    ``sent`` counts events acknowledged by Kafka (directly or from the spool); ``spooled``
    counts events written to the disk spool (they are counted in ``sent`` once they are
    re-sent, and in ``resent_from_spool``); ``spool_bytes`` is the spool's size on disk.
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
