"""Write one batch to PostgreSQL in one transaction: per table, a binary COPY of its rows
into the connection's staging table and one version-guarded upsert from it (``sinks.sql``);
then, in a second transaction, the spans of the sessions the batch touched
(``sql.SESSION_SPANS``).

Outputs of deleted entities, and rollups of groups with no member left, remove their rows
(a log's feedback with it) after every table's upserts (``sinks.tables.removes``).

A row the database refuses (a value no column can hold) must not stall the sink: when a
table's staged write fails on a row (COPY or upsert, rolled back to its savepoint), the
table's rows go the unnest path (``sql.upsert_sql``), and if that fails too they are written
one by one under savepoints; each refused row becomes a dead letter with the database's
reason, while the rest of the batch commits.
Connection failures are not handled here: they propagate, and the consumer retries the
whole batch (every statement is idempotent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from . import sql
from .batch import Batch, DeadLetterRow
from .tables import (
    LOGS,
    LOGS_BY_REFERENCE,
    NODES,
    SESSIONS,
    SPECS,
    TRACE_ROLLUPS,
    TRACES,
    TableSpec,
    removes,
)

__all__ = ["WriteResult", "write_batch"]

log = logging.getLogger(__name__)

# Errors of a row's content (not of the connection): isolate the row, don't retry.
_ROW_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
# A value whose fields cannot become its columns in the client (a stage output of the
# wrong shape: tokens as text, an id that is a number): its own dead letter, like a row
# PostgreSQL refuses, never the end of the sink.
_MALFORMED = (TypeError, ValueError, OverflowError, AttributeError)
# COPY encodes the rows in the client: a value of the wrong Python type fails there (with
# the unnest path it is asyncpg's DataError); the unnest path then decides as it always did.
_STAGED_ERRORS = (*_ROW_ERRORS, *_MALFORMED)


@dataclass(slots=True)
class WriteResult:
    rows: dict[str, int]
    refused: int = 0
    removed: dict[str, int] = field(default_factory=dict)  # rows of deleted entities, groups


def _columns(spec: TableSpec, values: list[dict[str, Any]]) -> list[list[Any]]:
    rows = [spec.row(value) for value in values]
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


async def _upsert(
    conn: asyncpg.Connection, spec: TableSpec, values: list[dict[str, Any]], timeout: float
) -> None:
    await conn.execute(sql.upsert_sql(spec), *_columns(spec, values), timeout=timeout)


async def _upsert_staged(
    conn: asyncpg.Connection, spec: TableSpec, values: list[dict[str, Any]], timeout: float
) -> None:
    """COPY the rows into the staging table, then upsert them from it."""
    records = [spec.row(value) for value in values]
    await conn.copy_records_to_table(
        sql.staging_table(spec),
        records=records,
        columns=spec.names,
        schema_name="pg_temp",
        timeout=timeout,
    )
    await conn.execute(sql.staged_upsert_sql(spec), timeout=timeout)


class _StagedRefused(Exception):
    """A row failed the staged write of its table (the batch's transaction rolled back)."""


async def _write_rows(
    conn: asyncpg.Connection,
    spec: TableSpec,
    rows: dict[tuple[str, ...], dict[str, Any]],
    batch: Batch,
    timeout: float,
    staged: bool,
) -> list[DeadLetterRow]:
    """Upsert one table's rows of the batch; returns the rows PostgreSQL refused.

    Staged, a failed row fails the batch's transaction (``_StagedRefused``): no savepoint
    per table, the batch is written again the unnest way. Unnest, a failed row rolls back
    to the table's savepoint and the table's rows are written one by one."""
    values = list(rows.values())
    if staged:
        try:
            await _upsert_staged(conn, spec, values, timeout)
        except _STAGED_ERRORS as exc:
            raise _StagedRefused from exc
        return []
    try:
        async with conn.transaction():
            await _upsert(conn, spec, values, timeout)
    except (*_ROW_ERRORS, *_MALFORMED):
        return await _upsert_isolating(conn, spec, rows, batch, timeout)
    return []


async def _create_staging(conn: asyncpg.Connection, batch: Batch, timeout: float) -> None:
    """The staging tables of every spec (not only the batch's: a later batch with another
    spec would fail and be written twice), in this session, outside a transaction (they
    outlive a batch that fails)."""
    specs = dict.fromkeys((*SPECS.values(), LOGS_BY_REFERENCE, *batch.rows))
    ddl = ";\n".join(sql.staging_ddl(spec) for spec in specs)
    await conn.execute(ddl, timeout=timeout)


async def _remove(
    conn: asyncpg.Connection, spec: TableSpec, values: list[dict[str, Any]], timeout: float
) -> None:
    projects = [value["project"] for value in values]
    ids = [value.get("id") for value in values]
    versions = [value["version"] for value in values]
    if spec in (LOGS, LOGS_BY_REFERENCE):
        refs = [value.get("reference_id") for value in values]
        await conn.execute(sql.REMOVE_LOGS, projects, ids, refs, versions, timeout=timeout)
        await conn.execute(sql.REMOVE_FEEDBACK, projects, ids, refs, timeout=timeout)
    else:
        keys = [[value.get(column) for value in values] for column in spec.conflict]
        await conn.execute(sql.remove_sql(spec), *keys, versions, timeout=timeout)
    if spec in (TRACES, NODES):  # a Maxim trace's or session's feedback goes with it
        traces = [value.get("id") if spec is TRACES else None for value in values]
        sessions = [value.get("id") if value.get("kind") == "session" else None
                    for value in values]  # fmt: skip
        await conn.execute(sql.REMOVE_TARGET_FEEDBACK, projects, traces, sessions, timeout=timeout)


async def _upsert_isolating(
    conn: asyncpg.Connection,
    spec: TableSpec,
    rows: dict[tuple[str, ...], dict[str, Any]],
    batch: Batch,
    timeout: float,
) -> list[DeadLetterRow]:
    """Write rows one at a time; the refused ones come back as dead letters, each under
    the Kafka origin of its value (a redelivered refusal is then not stored twice)."""
    refused: list[DeadLetterRow] = []
    for key, value in rows.items():
        try:
            async with conn.transaction():  # a savepoint inside the batch's transaction
                await _upsert(conn, spec, [value], timeout)
        except _ROW_ERRORS as exc:
            reason = f"{spec.table}: PostgreSQL refused the row: {exc}"
        except _MALFORMED as exc:
            reason = f"{spec.table}: malformed stage output: {type(exc).__name__}: {exc}"
        else:
            continue
        raw = orjson.dumps(value, default=repr)
        topic, partition, offset, index = batch.origins.get(
            (spec, key), (f"sink:{spec.table}", -1, -1, -1)
        )
        entity_id = value.get("id")
        refused.append(
            DeadLetterRow(
                topic,
                partition,
                offset,
                index,
                None if entity_id is None else str(entity_id),
                reason.replace("\x00", "\ufffd"),
                raw,
            )
        )
    return refused


async def _dead_letters(
    conn: asyncpg.Connection, rows: list[DeadLetterRow], timeout: float
) -> None:
    columns = [
        [r.topic for r in rows],
        [r.partition for r in rows],
        [r.offset for r in rows],
        [r.index for r in rows],
        # A dead letter is often an event refused *for* a NUL (in its id): text columns
        # cannot hold U+0000, so it is marked as stage 1 marks it (processors/text.py).
        [None if r.event_id is None else r.event_id.replace("\x00", "\ufffd") for r in rows],
        [r.reason.replace("\x00", "\ufffd") for r in rows],
        [r.raw for r in rows],
    ]
    await conn.execute(sql.DEAD_LETTERS, *columns, timeout=timeout)


async def _prompts(conn: asyncpg.Connection, batch: Batch, timeout: float) -> None:
    prompts = list(batch.prompts.values())
    await conn.execute(
        sql.PROMPTS,
        [p.project for p in prompts],
        [p.prompt_id for p in prompts],
        [p.path for p in prompts],
        timeout=timeout,
    )

    def part(p: dict[str, Any], *names: str) -> str | None:
        found = {n: p[n] for n in names if p.get(n) is not None}
        return orjson.dumps(found).decode() if found else None

    await conn.execute(
        sql.PROMPT_VERSIONS,
        [p.project for p in prompts],
        [p.version_id for p in prompts],
        [p.prompt_id for p in prompts],
        [p.prompt.get("model") for p in prompts],
        [p.prompt.get("provider") for p in prompts],
        [orjson.dumps(p.prompt.get("template")).decode() for p in prompts],
        [part(p.prompt, *_PARAMETERS) for p in prompts],
        [orjson.dumps(p.prompt.get("tools")).decode() for p in prompts],
        [p.environment for p in prompts],
        timeout=timeout,
    )


_PARAMETERS = (
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "response_format",
    "reasoning_effort",
    "other",
)


def _sessions_touched(batch: Batch) -> list[tuple[str, str]]:
    """The sessions whose span the batch may have changed: those it writes, and those its
    traces belong to or left."""
    touched = set(batch.rows.get(SESSIONS, {}))
    for rollup in batch.rows.get(TRACE_ROLLUPS, {}).values():
        project = rollup["project"]
        if rollup.get("session_id"):
            touched.add((project, rollup["session_id"]))
        touched.update((project, other) for other in rollup.get("other_sessions") or ())
    return sorted(touched)


async def _session_spans(
    conn: asyncpg.Connection, sessions: list[tuple[str, str]], timeout: float
) -> None:
    """Recompute the spans of ``sessions`` from their stored traces (see ``sql``)."""
    projects = [project for project, _ in sessions]
    ids = [session_id for _, session_id in sessions]
    async with conn.transaction():
        await conn.execute(sql.LOCK_SESSIONS, projects, ids, timeout=timeout)
        await conn.execute(sql.SESSION_SPANS, projects, ids, timeout=timeout)


async def write_batch(
    conn: asyncpg.Connection, batch: Batch, *, timeout: float = 60.0, staged: bool = True
) -> WriteResult:
    """Write the batch in one transaction; returns rows per table and refused rows.

    Staged, every table goes through COPY and its staged upsert; when a row fails that (a
    value PostgreSQL refuses), the transaction rolls back and the batch is written the
    unnest way, which dead-letters the refused rows. The staging tables are made when a
    session lacks them (its first batch, or a batch whose rollback undid them).
    ``staged=False`` writes the unnest way only (the benchmark's baseline)."""
    if staged:
        for created in (False, True):
            try:
                return await _write_batch(conn, batch, timeout, staged=True)
            except asyncpg.UndefinedTableError:
                if created:
                    raise
                await _create_staging(conn, batch, timeout)
            except _StagedRefused:
                break
    return await _write_batch(conn, batch, timeout, staged=False)


async def _write_batch(
    conn: asyncpg.Connection, batch: Batch, timeout: float, *, staged: bool
) -> WriteResult:
    result = WriteResult(rows={})
    dead = list(batch.dead_letters)
    async with conn.transaction():
        if batch.prompts:
            await _prompts(conn, batch, timeout)
        removals: dict[TableSpec, list[dict[str, Any]]] = {}
        for spec, all_rows in batch.rows.items():
            rows = {key: value for key, value in all_rows.items() if not removes(spec, value)}
            if len(rows) < len(all_rows):
                removals[spec] = [v for v in all_rows.values() if removes(spec, v)]
            if not rows:
                continue
            refused = await _write_rows(conn, spec, rows, batch, timeout, staged)
            result.refused += len(refused)
            dead.extend(refused)
            result.rows[spec.table] = result.rows.get(spec.table, 0) + len(rows)
        for spec, values in removals.items():
            await _remove(conn, spec, values, timeout)
            result.removed[spec.table] = result.removed.get(spec.table, 0) + len(values)
        if dead:
            await _dead_letters(conn, dead, timeout)
    sessions = _sessions_touched(batch)
    if sessions:  # after the commit: its traces must be visible to the recompute
        await _session_spans(conn, sessions, timeout)
    if result.refused:
        log.warning("PostgreSQL refused %d rows; they are in dead_letters", result.refused)
    return result
