"""Ingestion while PostgreSQL is unreachable: which failures mean "the database is away",
and one log line when an outage starts and one when it ends.

Kafka (or the gateway's spool) is the durable buffer; PostgreSQL only helps the write
paths: API keys, a log's prompt version by environment, Maxim nodes and held lines, the
``save=false`` index. While it is away, each of those answers from what the gateway
already knows or defers the work to its local spool (:mod:`gateway.deferred`), and counts
the fallback (``logflume_gateway_db_fallbacks_total{what}``); the reads, and a key this
gateway never saw, answer 503 with ``Retry-After`` (:func:`gateway.errors.install_handlers`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from kernel.dberrors import UNREACHABLE

__all__ = ["RETRY_AFTER_S", "UNAVAILABLE", "DatabaseAway", "DatabaseWatch"]

log = logging.getLogger(__name__)

# Failures of the connection or the server, not of the query (the sink retries on the same).
UNAVAILABLE: tuple[type[BaseException], ...] = UNREACHABLE
# What a 503 tells a client to wait before it retries (seconds).
RETRY_AFTER_S = 5


class DatabaseAway(ConnectionError):
    """Not asked: PostgreSQL could not be reached moments ago (:meth:`DatabaseWatch.check`)."""


class DatabaseWatch:
    """Whether the database was away at the last attempt, and the fallbacks taken by what
    (``api_key``, ``version``, ``reference``, ``unsaved``, ``humanloop_logs``, ``maxim_nodes``,
    ``maxim_hold``, ``maxim_release``, ``sweep``); a bounded label set, kept for the metric.

    For ``retry_s`` after a failure the write paths do not ask again (:meth:`check`): they
    fall back at once, so that a database that hangs rather than refuses costs a request at
    most one query timeout per ``retry_s``, not one per lookup."""

    def __init__(self, retry_s: float = 1.0) -> None:
        self.retry_s = retry_s
        self.down_since: float | None = None
        self._failed_at: float | None = None
        self.fallbacks: Counter[str] = Counter()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def check(self) -> None:
        """Raise :class:`DatabaseAway` while the last failure is under ``retry_s`` old."""
        failed_at = self._failed_at
        if failed_at is not None and time.monotonic() - failed_at < self.retry_s:
            raise DatabaseAway("PostgreSQL was unreachable moments ago")

    def failed(self, what: str, exc: BaseException) -> None:
        """A call for ``what`` could not reach PostgreSQL (or was not made: ``check``) and
        fell back."""
        self.fallbacks[what] += 1
        if not isinstance(exc, DatabaseAway):
            self._failed_at = time.monotonic()
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning(
                "PostgreSQL is unreachable (%s in %s): writes are answered from caches and "
                "the local spool, reads with 503",
                type(exc).__name__,
                what,
            )

    def answered(self) -> None:
        """PostgreSQL answered (a sweep went through, or a key's query)."""
        self._failed_at = None
        if self.down_since is not None:
            log.warning(
                "PostgreSQL answers again after %.1f s; the sweeper releases deferred work",
                time.monotonic() - self.down_since,
            )
            self.down_since = None
