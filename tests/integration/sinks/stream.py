"""The pure stages over a stream of raw records, and the oracle of the sink's tables.

Shared by the sink's integration tests and ``bench/sink_bench.py`` (events come from
``generator.py`` beside this file):

- :func:`run_stages` runs stage 1 -> stage 2 -> groups with the pure functions record by
  record, as the Faust agents would, and returns the records the stages would publish
  (entities, rollups, dead letters) in production order, plus the oracle: the highest
  version of every row;
- :func:`oracle_mismatches` compares the database with the oracle column by column;
- :func:`snapshot` is a full, byte-for-byte text image of every table the sink writes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from kernel.settings import Settings
from processors.codec import RECORD_OVERHEAD_BYTES
from processors.sequential import Emitted, SequentialStages
from producers.contract import merge_carried
from sinks.batch import Batch
from sinks.sql import param_type
from sinks.tables import SESSIONS, TRACE_ROLLUPS, TableSpec, removes, spec_for
from tests.services import with_database  # re-exported for the bench

__all__ = [
    "SINK_TABLES",
    "Oracle",
    "Published",
    "Stream",
    "batches",
    "contents",
    "oracle_mismatches",
    "publish",
    "run_stages",
    "snapshot",
    "with_database",
]

# Every table the sink writes, in the order a snapshot lists them.
SINK_TABLES = (
    "prompts",
    "prompt_versions",
    "logs",
    "feedback",
    "traces",
    "spans",
    "generations",
    "trace_nodes",
    "sessions",
    "prompt_version_stats",
    "dead_letters",
)


@dataclass(frozen=True, slots=True)
class Published:
    """One record a stage publishes: ``partition`` None lets the producer choose."""

    topic: str
    partition: int | None
    value: bytes


@dataclass(slots=True)
class Oracle:
    """The final row of every table key: the stage output with the highest version (with
    the payload values only older outputs carried, as the sink keeps them)."""

    rows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    prompts: dict[tuple[str, str], tuple[str | None, str]] = field(default_factory=dict)
    dead_letters: set[tuple[str, int, int, int]] = field(default_factory=set)

    def add(self, role: str, value: dict[str, Any]) -> None:
        spec = spec_for(role, value)
        assert spec is not None, f"no table for {role}/{value['kind']}"
        key = (spec, *spec.key(value))  # a log with a reference_id: by that reference
        current = self.rows.get(key)
        if current is None or current["version"] < value["version"]:
            # The newest output, with the payload values only older ones carried.
            self.rows[key] = value if current is None else merge_carried(current, value)
        if spec.table == "logs" and value.get("prompt") and value.get("prompt_id"):
            # A prompt and its versions are content-addressed: the first write stays.
            self.prompts.setdefault(
                (value["project"], value["version_id"]), (value.get("path"), value["prompt_id"])
            )

    def merge(self, other: Oracle) -> None:
        """Add what ``other`` (the oracle of a later stream) expects."""
        for key, value in other.rows.items():
            current = self.rows.get(key)
            if current is None or current["version"] < value["version"]:
                self.rows[key] = value if current is None else merge_carried(current, value)
        for key, prompt in other.prompts.items():
            self.prompts.setdefault(key, prompt)
        self.dead_letters |= other.dead_letters

    def session_spans(self) -> dict[tuple[str, str], tuple[str | None, str | None]]:
        """Per session, the span of the traces that belong to it (their final rollups)."""
        found: dict[tuple[str, str], list[tuple[datetime | None, datetime | None]]] = {}
        for spec, value in self.kept():  # a removed trace row no longer counts
            if spec is TRACE_ROLLUPS and value.get("session_id"):
                start, end = value.get("start_time"), value.get("end_time")
                found.setdefault((value["project"], value["session_id"]), []).append(
                    (_time(start), _time(end))
                )
        spans: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        for key, pairs in found.items():
            starts = [s for s, _ in pairs if s is not None]
            ends = [e for _, e in pairs if e is not None]
            spans[key] = (
                min(starts).isoformat() if starts else None,
                max(ends).isoformat() if ends else None,
            )
        return spans

    def kept(self) -> list[tuple[TableSpec, dict[str, Any]]]:
        """The final outputs that leave a row (not a deleted entity, nor a group with no
        member left, such as a session whose every trace moved to another)."""
        return [(key[0], value) for key, value in self.rows.items() if not removes(key[0], value)]

    def tables(self) -> dict[str, set[tuple[str, str]]]:
        found: dict[str, set[tuple[str, str]]] = {}
        for spec, value in self.kept():
            found.setdefault(spec.table, set()).add((value["project"], value["id"]))
        return found


@dataclass(slots=True)
class Stream:
    """What the stages published for a list of events, and the oracle of the tables."""

    events: int
    raw_records: int
    records: list[Published]
    oracle: Oracle
    values: int = 0  # stage outputs in the published records

    def by_topic(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.topic] = counts.get(record.topic, 0) + 1
        return counts


def run_stages(
    settings: Settings, raw_records: Sequence[tuple[int, bytes]], events: int = 0
) -> Stream:
    """Stage 1 -> stage 2 -> groups with the pure reducers, record by record (a stage's
    outputs reach the next stage before the following raw record): the records published
    to the entities, rollups and dead-letter topics, in production order, and the oracle.

    One implementation with replay: :meth:`processors.sequential.SequentialStages.run_record`.
    """
    topics = settings.topics
    stages = SequentialStages(
        topics,
        partitions=settings.partitions,
        max_event_bytes=settings.max_event_bytes,
        max_record_bytes=settings.max_record_bytes,
    )
    stream = Stream(events, len(raw_records), [], Oracle())
    kept = {topics.entities, topics.rollups, topics.deadletter}  # not the internal groups

    def published(topic: str, partition: int | None, value: bytes) -> None:
        if topic in kept:
            stream.records.append(Published(topic, partition, value))

    def collect(emitted: Emitted) -> None:
        for value in emitted.entities:
            stream.oracle.add("entities", value)
        for value in emitted.rollups:
            stream.oracle.add("rollups", value)
        stream.values += len(emitted.entities) + len(emitted.rollups)
        for letter in emitted.dead_letters:
            origin = letter.origin
            stream.oracle.dead_letters.add(
                (origin.topic, origin.partition, origin.offset, letter.index)
            )

    for emitted in stages.run_records(raw_records, published):
        collect(emitted)
    return stream


def batches(stream: Stream, size: int) -> Iterator[Batch]:
    """The stream's records in sink batches of about ``size`` values, each record at its
    index as offset (partition 0 when the producer chooses): what a sink reading them in
    order would write, in fixed boundaries."""
    batch = Batch()
    for offset, record in enumerate(stream.records):
        partition = record.partition or 0
        batch.track(record.topic, partition, offset)
        if record.topic.endswith(".deadletter"):
            batch.add_dead_letter(record.topic, partition, offset, record.value)
            continue
        role = record.topic.rsplit(".", 1)[1]
        for index, value in enumerate(orjson.loads(record.value)):
            batch.add_value(role, value, (record.topic, partition, offset, index))
        if len(batch) >= size:
            yield batch
            batch = Batch()
    if batch.records:
        yield batch


async def publish(settings: Settings, records: Iterable[Published]) -> int:
    """Send the records (acks=all) and wait for every one; returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_request_size=settings.max_record_bytes + RECORD_OVERHEAD_BYTES,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        futures = [await producer.send(r.topic, r.value, partition=r.partition) for r in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(futures)


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every row of every sink table as PostgreSQL prints it (all columns, updated_at
    included), sorted: equal snapshots mean byte-for-byte equal tables."""
    image: dict[str, list[str]] = {}
    for table in SINK_TABLES:
        rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t ORDER BY 1', timeout=60)
        image[table] = [r["row"] for r in rows]
    return image


async def contents(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every sink table's rows, sorted, every column but those the database fills (with
    ``now()`` or a sequence: they differ between databases written at other times, in other
    batches) and ``payload_carried`` (what a row's last write carried: it depends on the
    batching, see ``oracle_mismatches``): equal contents mean the same rows stored."""
    image: dict[str, list[str]] = {}
    for table in SINK_TABLES:
        filled = await conn.fetchval(
            "SELECT coalesce(array_agg(column_name::text), '{}')"
            " FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = $1"
            " AND (column_default = 'now()' OR column_default LIKE 'nextval(%')",
            table,
        )
        rows = await conn.fetch(
            f'SELECT (to_jsonb(t) - $1::text[])::text AS row FROM "{table}" t ORDER BY 1',
            [*filled, "payload_carried"],
            timeout=60,
        )
        image[table] = [r["row"] for r in rows]
    return image


async def oracle_mismatches(conn: asyncpg.Connection, oracle: Oracle, limit: int = 20) -> list[str]:
    """Differences between the tables and the oracle: missing, extra and different rows
    (every column the sink writes), prompts, and dead letters from the stages."""
    problems: list[str] = []
    for table, keys in sorted(oracle.tables().items()):
        rows = await conn.fetch(f'SELECT project, id FROM "{table}"', timeout=60)
        stored = {(r["project"], r["id"]) for r in rows}
        problems += [f"{table}: missing row {k}" for k in sorted(keys - stored)]
        problems += [f"{table}: unexpected row {k}" for k in sorted(stored - keys)]
    by_spec: dict[TableSpec, list[dict[str, Any]]] = {}
    spans = oracle.session_spans()
    for spec, value in oracle.kept():
        if spec is SESSIONS:  # the sink computes a session's span from its traces
            start, end = spans.get((value["project"], value["id"]), (None, None))
            value = {**value, "start_time": start, "end_time": end}
        by_spec.setdefault(spec, []).append(value)
    for spec, values in by_spec.items():
        columns = ", ".join(_read_column(name, pg_type) for name, pg_type, _ in spec.columns)
        rows = await conn.fetch(f'SELECT {columns} FROM "{spec.table}"', timeout=60)
        stored_rows = {(r["project"], r["id"]): r for r in rows}
        for value in values:
            stored = stored_rows.get((value["project"], value["id"]))
            if stored is None:
                continue  # already reported
            for (name, pg_type, _), expected in zip(spec.columns, spec.row(value), strict=True):
                if name == "payload_carried":
                    continue  # what the row's last write carried: depends on the batching
                if not _same(pg_type, expected, stored[name]):
                    problems.append(
                        f"{spec.table}[{value['project']}/{value['id']}].{name}: "
                        f"stored {stored[name]!r}, expected {expected!r}"
                    )
    rows = await conn.fetch("SELECT project, id, prompt_id FROM prompt_versions", timeout=60)
    versions = {(r["project"], r["id"]): r["prompt_id"] for r in rows}
    expected_versions = {k: prompt_id for k, (_, prompt_id) in oracle.prompts.items()}
    if versions != expected_versions:
        problems.append(f"prompt_versions: stored {versions}, expected {expected_versions}")
    rows = await conn.fetch(
        'SELECT topic, "partition", "offset", event_index FROM dead_letters', timeout=60
    )
    letters = {tuple(r) for r in rows}
    if not oracle.dead_letters <= letters:
        problems.append(f"dead_letters: missing {sorted(oracle.dead_letters - letters)[:5]}")
    return problems[:limit]


async def until_oracle(
    conn: asyncpg.Connection,
    oracle: Oracle,
    *,
    timeout_s: float,
    report: Callable[[], str] = str,
) -> None:
    """Wait until the tables equal the oracle; else fail with the differences and
    ``report()`` (the processes' logs, say)."""
    mismatches: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while mismatches := await oracle_mismatches(conn, oracle):
        if loop.time() > deadline:
            raise AssertionError(f"the tables differ from the oracle: {mismatches}\n{report()}")
        await asyncio.sleep(2.0)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _read_column(name: str, pg_type: str) -> str:
    # jsonb as its text (compared as parsed JSON); everything else in its native type.
    return f'"{name}"::text AS "{name}"' if pg_type == "jsonb" else f'"{name}"'


def _tagged(value: Any) -> Any:
    """JSON with booleans tagged, so that ``true`` never equals ``1`` in a comparison."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, dict):
        return {key: _tagged(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    return value


def _same(pg_type: str, expected: Any, stored: Any) -> bool:
    """Does the stored value equal the value the sink was given (in the column's type)?"""
    if expected is None or stored is None:
        return expected is None and stored is None
    if pg_type == "jsonb":
        return bool(_tagged(orjson.loads(expected)) == _tagged(orjson.loads(stored)))
    if pg_type == "text[]":
        return bool(orjson.loads(expected) == list(stored))
    if pg_type == "timestamptz":
        return bool(datetime.fromisoformat(expected) == stored)
    if isinstance(stored, Decimal):  # a float8 value in a numeric(20, 10) column
        return math.isclose(float(stored), float(expected), rel_tol=1e-12, abs_tol=1e-10)
    assert param_type(pg_type) == pg_type
    return bool(expected == stored)
