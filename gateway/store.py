"""Every query of the read API, in one module (the sinks' tables are the read model).

All queries filter by the request's project first: a key of one project never reads
another's rows (a foreign id is simply not found, hence 404). Listings use keyset
pagination, newest first, on ``(time, id)`` with the indexes of migration 0004: the cursor
is the last row's ``(time, id)``, so a page costs the same at any depth and rows written
meanwhile never shift a page.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson

from kernel.clients import pg_pool

from .errors import BadRequest
from .ids import valid_id

__all__ = ["Cursor", "LogFilter", "ReadStore", "as_utc", "connect_pool"]


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def connect_pool(dsn: str, *, max_size: int, timeout_s: float) -> asyncpg.Pool:
    """The gateway's pool: JSON columns decoded to Python objects."""
    # min_size=0: while the database is down, asyncpg would otherwise retry the connection
    # floor in the background and log a traceback for every attempt.
    pool = await pg_pool(
        dsn, min_size=0, max_size=max_size, timeout=timeout_s, command_timeout=timeout_s * 3,
        init=_init_connection,
    )  # fmt: skip
    return pool


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC (a naive one taken as UTC), as asyncpg sends a ``timestamptz``;
    ValueError when UTC's date falls outside Python's years 1 to 9999 (asyncpg's conversion
    would fail inside the query, e.g. ``0001-01-01T00:00:00+05:00``)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC (years 1 to 9999)") from None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last row's time and id, opaque to clients."""

    at: datetime
    id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.at.isoformat(), self.id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor :meth:`encode` made; 400 naming ``cursor`` for any other text, also
        for a forged one whose time or id no query could take (a time outside UTC's range,
        an id outside the contract's rule)."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            at, ident = orjson.loads(raw)
            if not isinstance(at, str) or not valid_id(ident):
                raise ValueError("not a time and an id")
            return cls(as_utc(datetime.fromisoformat(at)), ident)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise BadRequest("cursor: not a cursor this API returned") from None


_LOG_TIME = "coalesce(l.created_at, l.stored_at)"
_PROMPT_ORDER = {
    "created_at": "p.created_at",
    "updated_at": "p.updated_at",
    "name": "lower(coalesce(p.path, p.id))",
}


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which logs a listing takes: the read API's equality filters and Humanloop's
    ``logs.list`` filters (every one it sends is applied; none is ignored)."""

    equal: dict[str, str] = field(default_factory=dict)  # column -> value
    id_contains: tuple[str, ...] = ()  # the log id contains any of these
    search: str | None = None  # in the inputs or the output
    metadata_search: str | None = None
    start: datetime | None = None  # created at or after
    end: datetime | None = None  # created at or before
    in_trace: tuple[bool, ...] = ()  # in a trace (True), not in one (False), any listed

    def where(self, args: list[Any]) -> list[str]:
        """The SQL conditions over ``logs l`` (``args`` holds the project as ``$1`` and
        receives the values)."""

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        where = ["l.project = $1"]
        where += [f"l.{column} = {arg(value)}" for column, value in self.equal.items()]
        if self.id_contains:
            where.append(
                f"EXISTS (SELECT 1 FROM unnest({arg(list(self.id_contains))}::text[]) s"
                " WHERE strpos(l.id, s) > 0)"
            )
        if self.search is not None:
            where.append(
                f"(strpos(coalesce(l.output, ''), {arg(self.search)}) > 0"
                f" OR strpos(coalesce(l.inputs::text, ''), ${len(args)}) > 0)"
            )
        if self.metadata_search is not None:
            where.append(f"strpos(coalesce(l.metadata::text, ''), {arg(self.metadata_search)}) > 0")
        if self.start is not None:
            where.append(f"{_LOG_TIME} >= {arg(self.start)}")
        if self.end is not None:
            where.append(f"{_LOG_TIME} <= {arg(self.end)}")
        if set(self.in_trace) == {True}:
            where.append("l.trace_id IS NOT NULL")
        elif set(self.in_trace) == {False}:
            where.append("l.trace_id IS NULL")
        return where


_TRACE_TIME = "coalesce(t.start_time, t.first_seen)"


class ReadStore:
    """The read side over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 10.0) -> None:
        self.pool = pool
        self._t = timeout_s

    async def _one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(sql, *args, timeout=self._t)
        return dict(row) if row is not None else None

    async def _all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.pool.fetch(sql, *args, timeout=self._t)]

    # -- logs ------------------------------------------------------------------------------

    async def log(self, project: str, log_id: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM logs WHERE project = $1 AND id = $2", project, log_id)

    async def log_by_reference(self, project: str, reference_id: str) -> dict[str, Any] | None:
        return await self._one(
            "SELECT * FROM logs WHERE project = $1 AND reference_id = $2", project, reference_id
        )

    async def feedback(
        self, project: str, log_id: str, reference_id: str | None
    ) -> list[dict[str, Any]]:
        return await self._all(
            'SELECT id, value, source, "user", metadata, created_at FROM feedback'
            " WHERE project = $1 AND (log_id = $2 OR ($3::text IS NOT NULL AND reference_id = $3))"
            " ORDER BY coalesce(created_at, updated_at), id",
            project,
            log_id,
            reference_id,
        )

    async def judgments(
        self, project: str, log_id: str, reference_id: str | None
    ) -> list[dict[str, Any]]:
        """The evaluator logs judging a log (by its id or its reference id), oldest first."""
        return await self._all(
            "SELECT * FROM logs WHERE project = $1 AND log_kind = 'evaluator'"
            " AND (parent_id = $2 OR ($3::text IS NOT NULL AND parent_reference_id = $3))"
            " ORDER BY coalesce(created_at, stored_at), id",
            project,
            log_id,
            reference_id,
        )

    async def judgments_of(
        self, project: str, ids: list[str], reference_ids: list[str]
    ) -> list[dict[str, Any]]:
        """``id`` and ``reference_id`` of the stored evaluator logs judging these logs."""
        return await self._all(
            "SELECT id, reference_id FROM logs WHERE project = $1 AND log_kind = 'evaluator'"
            " AND (parent_id = ANY($2::text[]) OR parent_reference_id = ANY($3::text[]))",
            project,
            ids,
            reference_ids,
        )

    async def logs_page(
        self,
        project: str,
        *,
        limit: int,
        cursor: Cursor | None = None,
        filters: LogFilter | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """Logs newest first, ``limit`` after ``cursor`` (keyset pagination)."""
        args: list[Any] = [project]
        where = (filters or LogFilter()).where(args)
        if cursor is not None:
            args += [cursor.at, cursor.id]
            where.append(f"({_LOG_TIME}, l.id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        rows = await self._all(
            f"SELECT l.*, {_LOG_TIME} AS listed_at FROM logs l WHERE {' AND '.join(where)}"
            f" ORDER BY {_LOG_TIME} DESC, l.id DESC LIMIT ${len(args)}",
            *args,
        )
        return _page(rows, limit)

    async def logs_numbered_page(
        self, project: str, *, page: int, size: int, filters: LogFilter
    ) -> tuple[list[dict[str, Any]], int]:
        """Humanloop's paging: page ``page`` (from 1) of ``size`` logs, newest first (ties
        by id), and how many logs match. A log stored meanwhile shifts later pages by one,
        as on Humanloop; the keyset pagination above does not."""
        args: list[Any] = [project]
        where = " AND ".join(filters.where(args))
        total = await self.pool.fetchval(
            f"SELECT count(*) FROM logs l WHERE {where}", *args, timeout=self._t
        )
        args += [size, (page - 1) * size]
        rows = await self._all(
            f"SELECT l.* FROM logs l WHERE {where}"
            f" ORDER BY {_LOG_TIME} DESC, l.id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}",
            *args,
        )
        return rows, int(total)

    # -- prompts ---------------------------------------------------------------------------

    async def version_for(
        self, project: str, prompt_id: str | None, environment: str | None
    ) -> str | None:
        """The newest stored version of a Prompt (in ``environment`` when given)."""
        if prompt_id is None:
            return None
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            "SELECT id FROM prompt_versions WHERE project = $1 AND prompt_id = $2"
            " AND ($3::text IS NULL OR environment = $3) ORDER BY created_at DESC, id LIMIT 1",
            project,
            prompt_id,
            environment,
            timeout=self._t,
        )

    async def prompts_page(
        self,
        project: str,
        *,
        page: int,
        size: int,
        name: str | None,
        sort_by: Literal["created_at", "updated_at", "name"] = "created_at",
        descending: bool = True,
    ) -> tuple[list[dict[str, Any]], int]:
        """Humanloop's ``prompts.list``: page ``page`` (from 1) of the Prompts that have a
        version, ``name`` a case-insensitive part of the path, and how many match."""
        args: list[Any] = [project]
        where = "p.project = $1 AND EXISTS (SELECT 1 FROM prompt_versions v" \
            " WHERE v.project = p.project AND v.prompt_id = p.id)"  # fmt: skip
        if name is not None:
            args.append(name)
            where += " AND strpos(lower(coalesce(p.path, p.id)), lower($2)) > 0"
        total = await self.pool.fetchval(
            f"SELECT count(*) FROM prompts p WHERE {where}", *args, timeout=self._t
        )
        args += [size, (page - 1) * size]
        direction = "DESC" if descending else "ASC"
        rows = await self._all(
            f"SELECT p.* FROM prompts p WHERE {where}"
            f" ORDER BY {_PROMPT_ORDER[sort_by]} {direction}, p.id {direction}"
            f" LIMIT ${len(args) - 1} OFFSET ${len(args)}",
            *args,
        )
        return rows, int(total)

    async def prompt(self, project: str, prompt_id: str) -> dict[str, Any] | None:
        return await self._one(
            "SELECT * FROM prompts WHERE project = $1 AND id = $2", project, prompt_id
        )

    async def prompt_versions(self, project: str, prompt_ids: list[str]) -> list[dict[str, Any]]:
        """The versions of these Prompts, oldest first, each with its logs' count and when
        it was last used (from the pipeline's prompt-version rollups)."""
        return await self._all(
            "SELECT v.*, s.counts AS log_counts, s.last_seen AS last_used_at"
            " FROM prompt_versions v LEFT JOIN prompt_version_stats s"
            " ON s.project = v.project AND s.id = v.id"
            " WHERE v.project = $1 AND v.prompt_id = ANY($2::text[])"
            " ORDER BY v.created_at, v.id",
            project,
            prompt_ids,
        )

    # -- traces and sessions ---------------------------------------------------------------

    async def trace(self, project: str, trace_id: str) -> dict[str, Any] | None:
        return await self._one(
            "SELECT * FROM traces WHERE project = $1 AND id = $2", project, trace_id
        )

    async def trace_members(
        self, project: str, trace_id: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Spans, generations and logs of a trace (a log may be the trace's root itself)."""
        spans = await self._all(
            "SELECT * FROM spans WHERE project = $1 AND trace_id = $2 ORDER BY start_time, id",
            project,
            trace_id,
        )
        generations = await self._all(
            "SELECT * FROM generations WHERE project = $1 AND trace_id = $2"
            " ORDER BY start_time, id",
            project,
            trace_id,
        )
        logs = await self._all(
            "SELECT * FROM logs WHERE project = $1 AND (trace_id = $2 OR id = $2)"
            " ORDER BY coalesce(start_time, created_at, stored_at), id",
            project,
            trace_id,
        )
        return spans, generations, logs

    async def maxim_nodes(
        self, project: str, *, trace_id: str | None = None, session_id: str | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The tool calls, retrievals, events, errors and attachments of a trace (or a
        session's own node and its events and attachments), and the feedback rating it."""
        column, target = ("trace_id", trace_id) if trace_id is not None else (
            "session_id", session_id)  # fmt: skip
        nodes = await self._all(
            f"SELECT * FROM trace_nodes WHERE project = $1 AND {column} = $2"
            " ORDER BY start_time NULLS LAST, kind, id LIMIT 10000",
            project,
            target,
        )
        feedback = await self._all(
            'SELECT id, value, comment, source, "user", metadata, created_at FROM feedback'
            f" WHERE project = $1 AND {column} = $2 ORDER BY coalesce(created_at, updated_at), id"
            " LIMIT 1000",
            project,
            target,
        )
        return nodes, feedback

    async def traces_page(
        self, project: str, *, limit: int, cursor: Cursor | None = None
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        args: list[Any] = [project]
        where = ["t.project = $1", f"{_TRACE_TIME} IS NOT NULL"]
        if cursor is not None:
            args += [cursor.at, cursor.id]
            where.append(f"({_TRACE_TIME}, t.id) < ($2, $3)")
        args.append(limit + 1)
        rows = await self._all(
            f"SELECT t.*, {_TRACE_TIME} AS listed_at FROM traces t WHERE {' AND '.join(where)}"
            f" ORDER BY {_TRACE_TIME} DESC, t.id DESC LIMIT ${len(args)}",
            *args,
        )
        return _page(rows, limit)

    async def session(
        self, project: str, session_id: str
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
        """The session's totals, its traces and its logs (at most 1000 of each)."""
        totals = await self._one(
            "SELECT * FROM sessions WHERE project = $1 AND id = $2", project, session_id
        )
        traces = await self._all(
            "SELECT * FROM traces WHERE project = $1"
            " AND (session_id = $2 OR rollup_session_id = $2)"
            " ORDER BY coalesce(start_time, first_seen), id LIMIT 1000",
            project,
            session_id,
        )
        logs = await self._all(
            "SELECT * FROM logs WHERE project = $1"
            " AND (session_id = $2 OR session_reference_id = $2)"
            " ORDER BY coalesce(created_at, stored_at), id LIMIT 1000",
            project,
            session_id,
        )
        return totals, traces, logs

    # -- what a deletion erases (gateway.deletion) ----------------------------------------

    async def logs_named(
        self, project: str, ids: list[str], reference_ids: list[str]
    ) -> list[dict[str, Any]]:
        """``id`` and ``reference_id`` of the stored logs with one of these ids or refs."""
        return await self._all(
            "SELECT id, reference_id FROM logs WHERE project = $1"
            " AND (id = ANY($2::text[]) OR reference_id = ANY($3::text[]))",
            project,
            ids,
            reference_ids,
        )

    async def trace_nodes(self, project: str, trace_ids: list[str]) -> list[dict[str, Any]]:
        """Every stored member of the traces: ``kind``, ``id``, ``reference_id``."""
        return await self._all(
            "SELECT 'span' AS kind, id, NULL AS reference_id FROM spans"
            " WHERE project = $1 AND trace_id = ANY($2::text[])"
            " UNION ALL SELECT 'generation', id, NULL FROM generations"
            " WHERE project = $1 AND trace_id = ANY($2::text[])"
            " UNION ALL SELECT 'log', id, reference_id FROM logs"
            " WHERE project = $1 AND (trace_id = ANY($2::text[]) OR id = ANY($2::text[]))"
            " UNION ALL SELECT kind, id, NULL FROM trace_nodes"
            " WHERE project = $1 AND trace_id = ANY($2::text[])",
            project,
            trace_ids,
        )

    async def session_nodes(self, project: str, session_id: str) -> list[dict[str, Any]]:
        """A Maxim session's own node, events and attachments: ``kind``, ``id``."""
        return await self._all(
            "SELECT kind, id FROM trace_nodes WHERE project = $1 AND session_id = $2"
            " AND trace_id IS NULL",
            project,
            session_id,
        )

    async def session_traces(self, project: str, session_id: str) -> list[str]:
        """Ids of the traces of a session, and of the traces of its logs."""
        rows = await self._all(
            "SELECT id FROM traces WHERE project = $1"
            " AND (session_id = $2 OR rollup_session_id = $2)"
            " UNION SELECT coalesce(trace_id, id) FROM logs WHERE project = $1"
            " AND (session_id = $2 OR session_reference_id = $2)",
            project,
            session_id,
        )
        return [row["id"] for row in rows]


def _page(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], Cursor | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, Cursor(last["listed_at"], last["id"])
