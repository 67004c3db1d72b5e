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

Ids only, never a payload (``gateway_logs``, migration 0008). A deletion forgets them, and
the gateway's sweeper forgets them after ``LOGFLUME_GATEWAY_UNSAVED_TTL_S`` (7 days), when
the stored logs answer instead (as for :mod:`gateway.unsaved`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

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
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 10.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def places(self, project: str, ids: Iterable[str]) -> dict[str, LogPlace]:
        wanted = list(ids)
        if not wanted:
            return {}
        rows = await self._pool.fetch(_PLACES, project, wanted, timeout=self._timeout_s)
        found: dict[str, LogPlace] = {}
        for row in rows:  # the gateway's record first, then the stored log
            found.setdefault(row["id"], LogPlace(row["id"], row["trace_id"], row["reference_id"]))
        return found

    async def record(self, project: str, places: Sequence[LogPlace]) -> None:
        if not places:
            return
        await self._pool.execute(
            _RECORD,
            project,
            [p.id for p in places],
            [p.trace_id for p in places],
            [p.reference_id for p in places],
            timeout=self._timeout_s,
        )

    async def forget(self, project: str, ids: Iterable[str]) -> None:
        await self._pool.execute(_FORGET, project, list(ids), timeout=self._timeout_s)

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
