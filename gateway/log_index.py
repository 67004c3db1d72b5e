"""Which trace a Humanloop log belongs to, and a log's reference id by its log id.

Humanloop names a child log's parent only (``trace_parent_id``): a Prompt, Tool or Flow
log nested under a Flow log, possibly several levels deep. Every log of a trace carries
the trace's root id on the wire (``trace_id``; stage 2 groups by it), so the gateway
resolves the root when it accepts the child: the parent's own trace if the parent is in
one, else the parent itself (a Flow log that opens a trace). The gateway records every
log it accepts inside a trace before it answers, so the next level, in any later request
and through any gateway, finds it; logs that the pipeline stored from other producers
are found in ``logs``.

An update by log id must reach the log's entity, which stage 1 keys by the reference id
when the log has one: the gateway also records the reference id of the logs it accepts
with one, and adds it to their updates by id (:func:`gateway.routes_humanloop`).

While PostgreSQL is unreachable (:mod:`gateway.outage`), lookups answer from the logs this
gateway recorded meanwhile (an unknown parent is then taken as the trace's root, an update
by id goes out without the reference id), and the records wait in memory until
:meth:`PgLogIndex.flush` (the sweeper) writes them.

Ids only, never a payload (``gateway_logs``, migration 0008). A deletion forgets them, and
the gateway's sweeper forgets them after ``LOGFLUME_GATEWAY_UNSAVED_TTL_S`` (7 days), when
the stored logs answer instead (as for :mod:`gateway.unsaved`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from .outage import UNAVAILABLE, DatabaseWatch

__all__ = ["LogIndex", "LogPlace", "MemoryLogIndex", "PgLogIndex"]


@dataclass(frozen=True, slots=True)
class LogPlace:
    """What the gateway remembers of a log: its trace (root id) and its reference id."""

    id: str
    trace_id: str | None
    reference_id: str | None


class LogIndex(Protocol):
    async def places(self, project: str, ids: Iterable[str]) -> dict[str, LogPlace]:
        """The known logs among ``ids``."""
        ...

    async def record(self, project: str, places: Sequence[LogPlace]) -> None:
        """Remember these logs (the first record of a log wins)."""
        ...

    async def forget(self, project: str, ids: Iterable[str]) -> None:
        """Deleted logs."""
        ...

    async def expire(self, older_than_s: float) -> int:
        """Forget logs recorded more than ``older_than_s`` ago (by then the pipeline stored
        them, and ``logs`` answers); how many."""
        ...

    async def flush(self) -> int:
        """Write what was recorded while the database was away; how many."""
        ...


_PLACES = """
SELECT id, trace_id, reference_id FROM gateway_logs WHERE project = $1 AND id = ANY($2::text[])
UNION ALL
SELECT id, trace_id, reference_id FROM logs WHERE project = $1 AND id = ANY($2::text[])
"""

_RECORD = """
INSERT INTO gateway_logs (project, id, trace_id, reference_id)
SELECT $1, u.id, u.trace_id, u.reference_id
FROM unnest($2::text[], $3::text[], $4::text[]) AS u(id, trace_id, reference_id)
ON CONFLICT (project, id) DO NOTHING
"""

_FORGET = "DELETE FROM gateway_logs WHERE project = $1 AND id = ANY($2::text[])"
_EXPIRE = "DELETE FROM gateway_logs WHERE created_at < now() - make_interval(secs => $1)"


class PgLogIndex:
    def __init__(
        self, pool: asyncpg.Pool, *, timeout_s: float = 10.0, watch: DatabaseWatch | None = None
    ) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._watch = watch or DatabaseWatch()
        # Logs recorded while the database was away: project -> id -> place.
        self._pending: dict[str, dict[str, LogPlace]] = {}

    async def places(self, project: str, ids: Iterable[str]) -> dict[str, LogPlace]:
        pending = self._pending.get(project, {})
        found = {i: pending[i] for i in ids if i in pending}
        wanted = [i for i in ids if i not in found]
        if not wanted:
            return found
        try:
            self._watch.check()
            rows = await self._pool.fetch(_PLACES, project, wanted, timeout=self._timeout_s)
        except UNAVAILABLE as exc:
            self._watch.failed("humanloop_logs", exc)
            return found
        for row in rows:  # the gateway's record first, then the stored log
            found.setdefault(row["id"], LogPlace(row["id"], row["trace_id"], row["reference_id"]))
        return found

    async def record(self, project: str, places: Sequence[LogPlace]) -> None:
        if not places:
            return
        try:
            self._watch.check()
            await self._write(project, places)
        except UNAVAILABLE as exc:
            self._watch.failed("humanloop_logs", exc)
            waiting = self._pending.setdefault(project, {})
            for place in places:
                waiting.setdefault(place.id, place)

    async def _write(self, project: str, places: Sequence[LogPlace]) -> None:
        await self._pool.execute(
            _RECORD,
            project,
            [p.id for p in places],
            [p.trace_id for p in places],
            [p.reference_id for p in places],
            timeout=self._timeout_s,
        )

    async def flush(self) -> int:
        """Write the logs recorded while the database was away (the sweeper calls this;
        raises while it still is); how many."""
        written = 0
        while self._pending:
            project, places = self._pending.popitem()
            try:
                await self._write(project, list(places.values()))
            except BaseException:
                waiting = self._pending.setdefault(project, {})
                for log_id, place in places.items():
                    waiting.setdefault(log_id, place)
                raise
            written += len(places)
        return written

    async def forget(self, project: str, ids: Iterable[str]) -> None:
        forgotten = list(ids)
        for log_id in forgotten:
            self._pending.get(project, {}).pop(log_id, None)
        await self._pool.execute(_FORGET, project, forgotten, timeout=self._timeout_s)

    async def expire(self, older_than_s: float) -> int:
        status = await self._pool.execute(_EXPIRE, older_than_s, timeout=self._timeout_s)
        return int(status.split()[-1])


class MemoryLogIndex:
    """The in-memory twin (unit tests; a gateway without PostgreSQL)."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, str], LogPlace] = {}

    async def places(self, project: str, ids: Iterable[str]) -> dict[str, LogPlace]:
        return {i: self.logs[(project, i)] for i in ids if (project, i) in self.logs}

    async def record(self, project: str, places: Sequence[LogPlace]) -> None:
        for place in places:
            self.logs.setdefault((project, place.id), place)

    async def forget(self, project: str, ids: Iterable[str]) -> None:
        for log_id in ids:
            self.logs.pop((project, log_id), None)

    async def expire(self, older_than_s: float) -> int:
        return 0

    async def flush(self) -> int:
        return 0
