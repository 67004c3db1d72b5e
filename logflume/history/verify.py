"""``logflume verify``: do two databases hold the same logical content?

Every table the pipeline writes is read as ``(key, digest of the row's logical content)``
on both sides; a table's checksum is the row count and the sum, modulo 2**128, of the MD5 of
each key and digest: order-independent (rows come back in any order, physical layout and
insertion order do not matter) and sensitive to any changed, missing or extra row.

What is *logical content* was decided by comparing a live database with a replayed one
column by column (README, "Replay, export, import, verify"):

- columns that record *when this database* stored a row are left out: ``updated_at``
  everywhere, ``logs.stored_at``, ``prompts.created_at`` and ``prompt_versions.created_at``
  (``DEFAULT now()``, not the prompt's creation), ``dead_letters.id`` (a sequence) and
  ``dead_letters.received_at``. Every other column is compared, ``version`` included;
- a dead letter of stage 1 is keyed by its origin on the raw topic (topic, partition,
  offset, index in the record), which a replay reads again, and compared on event id,
  reason and raw bytes. A dead letter raised after stage 1 (a stage-2/3 record a reducer
  could not handle, a row PostgreSQL refused) names a record of a derived topic, whose
  packing differs between the live Faust path and replay: it is compared by what went
  wrong with what, ``(event_id, reason)``, as a set.

The gateway's own tables (API keys, its node index, held lines) are configuration and
in-flight state of one deployment, not derived from the event history: not compared.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from kernel.clients import pg_connect
from sinks.tables import SPECS

__all__ = [
    "TABLES",
    "Difference",
    "TableResult",
    "VerifyResult",
    "checksum",
    "column_differences",
    "fingerprint",
    "verify",
]

# Table -> the columns that are not logical content (when this database stored the row).
TABLES: dict[str, tuple[str, ...]] = {
    "prompts": ("created_at", "updated_at"),
    "prompt_versions": ("created_at",),
    "logs": ("stored_at", "updated_at", "payload_carried"),
    "feedback": ("updated_at",),
    "traces": ("updated_at", "payload_carried"),
    "spans": ("updated_at", "payload_carried"),
    "generations": ("updated_at", "payload_carried"),
    "trace_nodes": ("updated_at", "payload_carried"),
    "sessions": ("updated_at",),
    "prompt_version_stats": ("updated_at",),
    "dead_letters": ("id", "received_at"),
}

# Table -> its columns that hold users' payloads (messages, inputs, outputs, documents, a
# dead letter's raw event): a difference in them is printed as a fingerprint, never a value.
PAYLOAD_COLUMNS: dict[str, frozenset[str]] = {"dead_letters": frozenset({"raw"})}
for _spec in SPECS.values():
    _known = PAYLOAD_COLUMNS.get(_spec.table, frozenset())
    PAYLOAD_COLUMNS[_spec.table] = _known | frozenset(_spec.payload)

_MOD = 1 << 128
# Keys the fingerprints of one run: equal values compare equal within it, and a value cannot
# be found again by hashing guesses (a payload may be a short, guessable text).
_FINGERPRINT_KEY = os.urandom(16)


def fingerprint(value: Any) -> str | None:
    """What a difference shows of a payload value: its size and a keyed digest."""
    if value is None:
        return None
    text = orjson.dumps(value)
    digest = hmac.new(_FINGERPRINT_KEY, text, hashlib.sha256).hexdigest()[:12]
    return f"<payload: {len(text):,} bytes of JSON, fingerprint {digest}>"


def checksum(pairs: Iterable[tuple[str, str]]) -> tuple[int, str]:
    """``(rows, checksum)`` of ``(key, digest)`` pairs, independent of their order."""
    total, count = 0, 0
    for key, digest in pairs:
        total = (total + int.from_bytes(hashlib.md5(f"{key}\x1f{digest}".encode()).digest())) % _MOD
        count += 1
    return count, f"{total:032x}"


def column_differences(
    a: dict[str, Any] | None, b: dict[str, Any] | None, payload: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``{column: (value in A, value in B)}`` of the columns that differ (a missing row is
    ``None``: every column of the other side differs); a ``payload`` column's values as
    their :func:`fingerprint`."""
    a, b = a or {}, b or {}
    differences = {}
    for name in sorted(a.keys() | b.keys()):
        value_a, value_b = a.get(name), b.get(name)
        if value_a != value_b:
            if name in payload:
                value_a, value_b = fingerprint(value_a), fingerprint(value_b)
            differences[name] = (value_a, value_b)
    return differences


def _queries(table: str, events_topic: str) -> tuple[str, str, list[Any]]:
    """SQL reading ``(k, h)`` of every row, and SQL reading the content of given keys."""
    ignored = ", ".join(f"'{name}'" for name in TABLES[table])
    content = f"(to_jsonb(t) - ARRAY[{ignored}]::text[])"
    if table != "dead_letters":
        kind = "t.kind, " if table == "trace_nodes" else ""  # its rows are unique per kind
        key = f"jsonb_build_array(t.project, {kind}t.id)::text"
        return (
            f'SELECT {key} AS k, md5({content}::text) AS h FROM "{table}" t',
            f'SELECT {key} AS k, {content}::text AS row FROM "{table}" t WHERE {key} = ANY($1)',
            [],
        )
    raw_origin = "t.topic = $1"
    key = (
        f"CASE WHEN {raw_origin} "
        "THEN jsonb_build_array(t.topic, t.partition, t.offset, t.event_index)::text "
        "ELSE jsonb_build_array('derived', t.event_id, t.reason)::text END"
    )
    logical = (
        f"CASE WHEN {raw_origin} "
        "THEN jsonb_build_object('event_id', t.event_id, 'reason', t.reason, "
        "'raw', encode(t.raw, 'base64')) "
        "ELSE jsonb_build_object('event_id', t.event_id, 'reason', t.reason) END"
    )
    return (
        f"SELECT DISTINCT {key} AS k, md5({logical}::text) AS h FROM dead_letters t",
        f"SELECT DISTINCT {key} AS k, {logical}::text AS row FROM dead_letters t "
        f"WHERE {key} = ANY($2)",
        [events_topic],
    )


@dataclass(frozen=True, slots=True)
class Difference:
    """One row that differs: its key and the differing columns (A, B)."""

    table: str
    key: str
    only_in: str | None  # "A" or "B" when the row is missing on the other side
    columns: dict[str, Any]


@dataclass(slots=True)
class TableResult:
    table: str
    rows_a: int
    rows_b: int
    checksum_a: str
    checksum_b: str
    differing_rows: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return self.rows_a == self.rows_b and self.checksum_a == self.checksum_b


@dataclass(slots=True)
class VerifyResult:
    tables: list[TableResult]

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)


async def _digests(conn: asyncpg.Connection, sql: str, args: list[Any]) -> dict[str, str]:
    rows = await conn.fetch(sql, *args, timeout=600)
    return {r["k"]: r["h"] for r in rows}


async def _rows(
    conn: asyncpg.Connection, sql: str, args: list[Any], keys: list[str]
) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(sql, *args, keys, timeout=600)
    return {r["k"]: orjson.loads(r["row"]) for r in rows}


async def verify_table(
    a: asyncpg.Connection, b: asyncpg.Connection, table: str, events_topic: str, show: int
) -> TableResult:
    digest_sql, rows_sql, args = _queries(table, events_topic)  # args bind $1.., keys last
    digests_a = await _digests(a, digest_sql, args)
    digests_b = await _digests(b, digest_sql, args)
    count_a, sum_a = checksum(digests_a.items())
    count_b, sum_b = checksum(digests_b.items())
    result = TableResult(table, count_a, count_b, sum_a, sum_b)
    if result.equal:
        return result
    differing = sorted(
        k for k in digests_a.keys() | digests_b.keys() if digests_a.get(k) != digests_b.get(k)
    )
    result.differing_rows = len(differing)
    first = differing[:show]
    content_a = await _rows(a, rows_sql, args, first)
    content_b = await _rows(b, rows_sql, args, first)
    for key in first:
        row_a, row_b = content_a.get(key), content_b.get(key)
        only = "A" if row_b is None else "B" if row_a is None else None
        columns = column_differences(row_a, row_b, PAYLOAD_COLUMNS.get(table, frozenset()))
        result.differences.append(Difference(table, key, only, columns))
    return result


async def verify(dsn_a: str, dsn_b: str, *, events_topic: str, show: int = 5) -> VerifyResult:
    """Compare every pipeline table of the two databases (read in one snapshot each)."""
    a = await pg_connect(dsn_a)
    try:
        b = await pg_connect(dsn_b)
        try:
            results = []
            async with (
                a.transaction(isolation="repeatable_read", readonly=True),
                b.transaction(isolation="repeatable_read", readonly=True),
            ):
                for table in TABLES:
                    results.append(await verify_table(a, b, table, events_topic, show))
            return VerifyResult(results)
        finally:
            await b.close()
    finally:
        await a.close()
