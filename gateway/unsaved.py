"""The gateway's half of ``save=false``: no payload of an unsaved log is published.

Every event goes through :func:`screen` before it is handed to the publisher (so before
it is sent, spooled or queued anywhere). A ``log`` that says ``save=false`` loses its
payload fields (``producers.contract.PAYLOAD_FIELDS``, stage 1's list) and its handles
(``id:…``, ``ref:…``) are recorded in the shared :class:`UnsavedIndex`; an update, or a
later create, that addresses a recorded log, or a log the pipeline stored with
``save = false``, loses its payload fields too. The index is a PostgreSQL table
(``unsaved_logs``), so a log created through one gateway and updated through another is
recognised.

What remains: an update that reaches the gateway before the save=false create it
belongs to (it cannot be recognised yet), and events that a producer which is not
logflume's writes to the raw topic directly. Stage 1 still keeps those payloads out of
its state, its outputs and PostgreSQL; they stay in the raw topic until its retention.

While PostgreSQL is unreachable, :class:`PgUnsavedIndex` keeps the handles it is given in
memory (written to the table by :meth:`PgUnsavedIndex.flush` once it answers) and answers
lookups from them: an update through this gateway of a save=false log it accepted is still
stripped; one of a log accepted by another gateway, or stored unsaved from another producer,
is not recognised until the database is back (stage 1 still keeps its payload downstream).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

import asyncpg
import orjson

from producers.contract import (
    LOG_TYPES,
    PAYLOAD_FIELDS,
    Event,
    event_without_payload,
    log_handles,
)
from producers.sdk.encoding import Encoded

from .outage import UNAVAILABLE, DatabaseWatch

__all__ = ["MemoryUnsavedIndex", "PgUnsavedIndex", "UnsavedIndex", "screen"]


class UnsavedIndex(Protocol):
    async def record(self, project: str, handles: Iterable[str]) -> None:
        """Remember the handles of save=false logs (durably, before they are published)."""
        ...

    async def known(self, project: str, handles: Iterable[str]) -> set[str]:
        """Those of ``handles`` that name a save=false log."""
        ...

    async def expire(self, older_than_s: float) -> int:
        """Forget handles recorded more than ``older_than_s`` ago; how many."""
        ...

    async def flush(self) -> int:
        """Write what was recorded while the database was away; how many handles."""
        ...


class MemoryUnsavedIndex:
    """The in-memory twin (tests; a gateway without PostgreSQL)."""

    def __init__(self) -> None:
        self._handles: set[tuple[str, str]] = set()

    async def record(self, project: str, handles: Iterable[str]) -> None:
        self._handles.update((project, handle) for handle in handles)

    async def known(self, project: str, handles: Iterable[str]) -> set[str]:
        return {handle for handle in handles if (project, handle) in self._handles}

    async def expire(self, older_than_s: float) -> int:
        return 0

    async def flush(self) -> int:
        return 0


_RECORD = """
INSERT INTO unsaved_logs (project, handle) SELECT $1, unnest($2::text[])
ON CONFLICT (project, handle) DO NOTHING
"""

# The gateways' records, and the logs the pipeline stored unsaved (created by any producer).
_KNOWN = """
SELECT handle FROM unsaved_logs WHERE project = $1 AND handle = ANY($2::text[])
UNION
SELECT 'id:' || id FROM logs WHERE project = $1 AND id = ANY($3::text[]) AND NOT save
UNION
SELECT 'ref:' || reference_id FROM logs
 WHERE project = $1 AND reference_id = ANY($4::text[]) AND NOT save
"""

_EXPIRE = "DELETE FROM unsaved_logs WHERE noted_at < now() - make_interval(secs => $1)"


class PgUnsavedIndex:
    """``unsaved_logs`` in PostgreSQL, shared by every gateway of a deployment (with the
    handles recorded while it was unreachable kept in memory, see the module docstring)."""

    def __init__(
        self, pool: asyncpg.Pool, *, timeout_s: float = 10.0, watch: DatabaseWatch | None = None
    ) -> None:
        self._pool = pool
        self._t = timeout_s
        self._watch = watch or DatabaseWatch()
        self._pending: set[tuple[str, str]] = set()  # (project, handle) not written yet

    async def record(self, project: str, handles: Iterable[str]) -> None:
        handles = list(handles)
        try:
            self._watch.check()
            await self._pool.execute(_RECORD, project, handles, timeout=self._t)
        except UNAVAILABLE as exc:
            self._watch.failed("unsaved", exc)
            self._pending.update((project, handle) for handle in handles)

    async def known(self, project: str, handles: Iterable[str]) -> set[str]:
        wanted = list(handles)
        local = {h for h in wanted if (project, h) in self._pending}
        ids = [h[3:] for h in wanted if h.startswith("id:")]
        refs = [h[4:] for h in wanted if h.startswith("ref:")]
        try:
            self._watch.check()
            rows = await self._pool.fetch(_KNOWN, project, wanted, ids, refs, timeout=self._t)
        except UNAVAILABLE as exc:
            self._watch.failed("unsaved", exc)
            return local
        return local | {row[0] for row in rows}

    async def flush(self) -> int:
        """Write the handles recorded while the database was away (raises while it still
        is); how many."""
        pending = sorted(self._pending)
        by_project: dict[str, list[str]] = defaultdict(list)
        for project, handle in pending:
            by_project[project].append(handle)
        for project, handles in by_project.items():
            await self._pool.execute(_RECORD, project, handles, timeout=self._t)
            self._pending.difference_update((project, handle) for handle in handles)
        return len(pending)

    async def expire(self, older_than_s: float) -> int:
        status = await self._pool.execute(_EXPIRE, older_than_s, timeout=self._t)
        return int(status.split()[-1])


async def screen(
    index: UnsavedIndex, encoded: Sequence[tuple[Event, Encoded]]
) -> list[tuple[Event, Encoded]]:
    """The events as they may be published: records the save=false creates' handles, and
    strips the payload fields of every event of an unsaved log. Removing optional fields
    keeps a valid event valid and its routing key unchanged."""
    unsaved: dict[str, list[str]] = defaultdict(list)  # project -> handles to record
    addressed: dict[str, list[str]] = defaultdict(list)  # project -> handles to look up
    for event, _ in encoded:
        if event.type not in LOG_TYPES:
            continue
        handles = log_handles(event.body.model_dump(include={"id", "reference_id"}))
        if event.type == "log" and event.body.save is False:
            unsaved[event.project] += handles
        elif not PAYLOAD_FIELDS.isdisjoint(event.body.model_fields_set):
            addressed[event.project] += handles
    for project, handles in unsaved.items():
        await index.record(project, handles)
    known = {project: set(handles) for project, handles in unsaved.items()}
    for project, handles in addressed.items():
        known.setdefault(project, set()).update(await index.known(project, handles))
    if not any(known.values()):
        return list(encoded)
    return [_screened(event, data, known.get(event.project, set())) for event, data in encoded]


def _screened(event: Event, data: Encoded, unsaved: set[str]) -> tuple[Event, Encoded]:
    if event.type not in LOG_TYPES or PAYLOAD_FIELDS.isdisjoint(event.body.model_fields_set):
        return event, data
    if unsaved.isdisjoint(log_handles(event.body.model_dump(include={"id", "reference_id"}))):
        return event, data
    key, raw = data
    return event, (key, orjson.dumps(event_without_payload(orjson.loads(raw))))
