"""Sink throughput: the real :class:`sinks.consumer.Sink` against a per-row autocommit writer.

What it does, against the running services (``logflume up``, or ``KAFKA_BOOTSTRAP_SERVERS``
/ ``DATABASE_URL``):

1. generates N events (Maxim traces, Humanloop logs with updates, feedback, duplicates, a
   few invalid ones), runs the pure stages over them (stage 1 -> stage 2 -> groups) and
   publishes their outputs to fresh topics (entities, rollups, dead letters);
2. runs one Sink over the pre-published records into a fresh database per write design
   (``--designs``: ``staged``, binary COPY into a staging table then one upsert per table,
   the sink's path; ``unnest``, one upsert per table binding one array per column, the path
   before it): rows/s per table (rows written / time in that table's statements) and for
   the whole sink (stage outputs consumed / wall time, Kafka reads, parsing, writes and
   offset commits included); ``--rounds`` repeats them, alternating their order;
   ``--direct`` times the writer alone instead (fixed batches, no Kafka, no Sink);
3. writes the same stage outputs, one autocommit ``INSERT … ON CONFLICT`` per value, into
   another fresh database: the naive writer's rows/s per table and overall;
4. checks every database against the oracle and the designs' tables against each other
   (every column but ``payload_carried`` and those of ``DEFAULT now()`` or a sequence),
   prints tables (rich), optionally saves the figures (``--json``) and compares them with a
   saved run (``--baseline``).

Run from the repository root::

    python bench/sink_bench.py                      # 200k events
    python bench/sink_bench.py --events 50000 --json sink.json
    python bench/sink_bench.py --baseline sink.json
    python bench/sink_bench.py --events 100000 --rounds 3 --naive-rows 20000
    python bench/sink_bench.py --events 100000 --direct --rounds 4   # the writer alone
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

# The shared stream generator lives with the tests: the repository's root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sinks.writer
from kernel.settings import Settings
from kernel.topics import ensure_topics
from logflume.synthetic import generate_events, pack_events
from sinks import sql
from sinks.batch import Batch, DeadLetterRow
from sinks.consumer import BatchReport, Sink
from sinks.migrations import apply_migrations
from sinks.tables import TableSpec, spec_for
from tests.integration.sinks.stream import (
    Stream,
    batches,
    contents,
    oracle_mismatches,
    publish,
    run_stages,
    with_database,
)

ROOT = Path(__file__).resolve().parent.parent

console = Console(width=None if sys.stdout.isatty() else 150)
WHOLE = "whole sink"
DEAD_LETTERS = "dead_letters"
PROMPTS = "prompts"
DESIGNS = ("staged", "unnest")  # the sink's write path; the one before it (baseline)


@dataclass(slots=True)
class Figures:
    """Rows and seconds per table, and the whole run."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    values: int = 0
    wall_s: float = 0.0
    first_batch_s: float = 0.0  # the sink's first batch written (group join included)

    def add(self, table: str, rows: int, seconds: float) -> None:
        self.rows[table] = self.rows.get(table, 0) + rows
        self.seconds[table] = self.seconds.get(table, 0.0) + seconds

    def rate(self, table: str) -> float | None:
        seconds = self.seconds.get(table, 0.0)
        return self.rows.get(table, 0) / seconds if seconds > 0 else None

    def merge(self, other: Figures) -> None:
        """Add another run's figures (of the same workload) to these."""
        for table, rows in other.rows.items():
            self.add(table, rows, other.seconds.get(table, 0.0))
        self.values += other.values
        self.wall_s += other.wall_s
        self.first_batch_s += other.first_batch_s

    @property
    def whole_rate(self) -> float:
        return self.values / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        tables = {
            t: {
                "rows": self.rows[t],
                "seconds": round(self.seconds.get(t, 0.0), 4),
                "rows_per_s": round(self.rate(t) or 0.0, 1),
            }
            for t in sorted(self.rows)
        }
        return {
            "tables": tables,
            "values": self.values,
            "wall_s": round(self.wall_s, 3),
            "values_per_s": round(self.whole_rate, 1),
        }


# -- the sink -------------------------------------------------------------------------------


@contextlib.contextmanager
def timed_statements(figures: Figures) -> Iterator[None]:
    """Time the writer's statements per table while the real Sink runs (the statements
    themselves are untouched; a table's time includes any fall-back to rows one by one)."""
    write_rows, prompts = sinks.writer._write_rows, sinks.writer._prompts
    dead = sinks.writer._dead_letters

    async def timed_rows(
        conn: asyncpg.Connection, spec: TableSpec, rows: dict[Any, Any], *rest: Any
    ) -> list[DeadLetterRow]:
        started = time.perf_counter()
        refused = await write_rows(conn, spec, rows, *rest)
        figures.add(_label(spec), len(rows), time.perf_counter() - started)
        return refused

    async def timed_prompts(conn: asyncpg.Connection, batch: Batch, timeout: float) -> None:
        started = time.perf_counter()
        await prompts(conn, batch, timeout)
        figures.add(PROMPTS, len(batch.prompts), time.perf_counter() - started)

    async def timed_dead(
        conn: asyncpg.Connection, rows: list[DeadLetterRow], timeout: float
    ) -> None:
        started = time.perf_counter()
        await dead(conn, rows, timeout)
        figures.add(DEAD_LETTERS, len(rows), time.perf_counter() - started)

    sinks.writer._write_rows = timed_rows  # type: ignore[assignment]
    sinks.writer._prompts = timed_prompts  # type: ignore[assignment]
    sinks.writer._dead_letters = timed_dead  # type: ignore[assignment]
    try:
        yield
    finally:
        sinks.writer._write_rows, sinks.writer._prompts = write_rows, prompts
        sinks.writer._dead_letters = dead


def _label(spec: TableSpec) -> str:
    return spec.table if spec.version_column == "version" else f"{spec.table} (rollups)"


async def run_sink(
    settings: Settings, published: int, values: int, design: str
) -> tuple[Figures, list[BatchReport]]:
    figures = Figures(values=values)
    reports: list[BatchReport] = []
    done = asyncio.Event()
    first_batch: list[float] = []

    def on_batch(report: BatchReport) -> None:
        reports.append(report)
        if not first_batch:
            first_batch.append(time.perf_counter())
        if sum(r.records for r in reports) >= published:
            done.set()

    group_id = f"{settings.sink_group}-{design}-{uuid.uuid4().hex[:6]}"
    sink = Sink(settings, on_batch=on_batch, group_id=group_id, staged=design == "staged")
    with timed_statements(figures):
        started = time.perf_counter()
        task = asyncio.create_task(sink.run())
        waiter = asyncio.create_task(done.wait())
        finished, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in finished:
            waiter.cancel()
            task.result()
            raise RuntimeError("the sink stopped before writing every record")
        figures.wall_s = time.perf_counter() - started
        figures.first_batch_s = first_batch[0] - started
        sink.stop()
        await task
    return figures, reports


async def run_direct(
    dsn: str, stream: Stream, batch_values: int, design: str
) -> tuple[Figures, list[BatchReport]]:
    """The sink's writer alone: the stream in fixed batches (``stream.batches``) through
    ``write_batch`` on one connection, no Kafka (wall = the writes)."""
    figures = Figures(values=stream.values)
    reports: list[BatchReport] = []
    prepared = list(batches(stream, batch_values))
    gc.freeze()  # the batches are the bench's: no collection of the writes walks them
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        with timed_statements(figures):
            started = time.perf_counter()
            for batch in prepared:
                began = time.perf_counter()
                result = await sinks.writer.write_batch(conn, batch, staged=design == "staged")
                seconds = time.perf_counter() - began
                reports.append(
                    BatchReport(batch.records, batch.values, result.rows, result.refused, seconds)
                )
            figures.wall_s = time.perf_counter() - started
    finally:
        await conn.close()
    return figures, reports


# -- the naive writer -----------------------------------------------------------------------


def naive_sql(spec: TableSpec) -> str:
    """One row: ``INSERT … VALUES (…) ON CONFLICT … DO UPDATE`` with the sink's version guard."""
    values = []
    for i, (_, pg_type, _) in enumerate(spec.columns, 1):
        if pg_type == "text[]":
            values.append(
                f"CASE WHEN ${i}::text IS NULL THEN NULL "
                f"ELSE ARRAY(SELECT jsonb_array_elements_text(${i}::text::jsonb)) END"
            )
        else:
            values.append(f"${i}::{sql.param_type(pg_type)}::{pg_type}")
    columns = ", ".join(f'"{n}"' for n in spec.names)
    keep = {"project", "id"} | spec.keep_first
    updates = ", ".join(sql.update_clause(spec, n) for n in spec.names if n not in keep)
    version = f'"{spec.version_column}"'
    return (
        f'INSERT INTO "{spec.table}" AS t ({columns}) VALUES ({", ".join(values)}) '
        f"ON CONFLICT (project, id) DO UPDATE SET {updates}, updated_at = now() "
        f"WHERE t.{version} < EXCLUDED.{version}"
    )


NAIVE_DEAD_LETTER = (
    'INSERT INTO dead_letters (topic, "partition", "offset", event_index, event_id, reason, raw) '
    "VALUES ($1, $2, $3, $4, $5, $6, $7) "
    'ON CONFLICT (topic, "partition", "offset", event_index) DO NOTHING'
)


# One naive write: (table label, the statement, its parameters); a statement of None
# writes a log's prompt and prompt version (the parameter is a one-prompt Batch).
NaiveRow = tuple[str, str | None, tuple[Any, ...]]


def naive_rows(stream: Stream, limit: int) -> list[NaiveRow]:
    """The naive writes of every stage output and dead letter, in published order."""
    roles: dict[str, str] = {}
    rows: list[NaiveRow] = []
    for record in stream.records:
        if record.topic.endswith(".deadletter"):
            batch = Batch()
            batch.add_dead_letter(record.topic, -1, -1, record.value)
            d = batch.dead_letters[0]
            params = (d.topic, d.partition, d.offset, d.index, d.event_id, d.reason, d.raw)
            rows.append((DEAD_LETTERS, NAIVE_DEAD_LETTER, params))
            continue
        role = roles.setdefault(record.topic, record.topic.rsplit(".", 1)[1])
        for value in orjson.loads(record.value):
            spec = spec_for(role, value)
            assert spec is not None
            if spec.table == "logs" and value.get("prompt") and value.get("prompt_id"):
                one = Batch()
                one.add_value(role, value)
                rows.append((PROMPTS, None, (one,)))
            rows.append((_label(spec), naive_sql(spec), spec.row(value)))
        if limit and len(rows) >= limit:
            break
    return rows[:limit] if limit else rows


async def run_naive(dsn: str, rows: list[NaiveRow]) -> Figures:
    """One autocommit statement per row (two for a prompt and its version)."""
    figures = Figures(values=sum(1 for label, _, _ in rows if label != PROMPTS))
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        started = time.perf_counter()
        for label, statement, params in rows:
            t = time.perf_counter()
            if statement is None:
                await sinks.writer._prompts(conn, params[0], 60.0)
            else:
                await conn.execute(statement, *params, timeout=60)
            figures.add(label, 1, time.perf_counter() - t)
        figures.wall_s = time.perf_counter() - started
    finally:
        await conn.close()
    return figures


# -- set-up, report -------------------------------------------------------------------------


async def fresh_database(dsn: str, name: str) -> str:
    admin = await asyncpg.connect(dsn, timeout=30)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    target = with_database(dsn, name)
    conn = await asyncpg.connect(target, timeout=30)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return target


async def drop_databases(dsn: str, names: list[str]) -> None:
    admin = await asyncpg.connect(dsn, timeout=30)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(list(settings.topics.all()))
    finally:
        await admin.close()


async def check(dsn: str, stream: Stream) -> list[str]:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return await oracle_mismatches(conn, stream.oracle, limit=5)
    finally:
        await conn.close()


async def table_image(dsn: str) -> dict[str, list[str]]:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return await contents(conn)
    finally:
        await conn.close()


def image_differences(
    name: str, image: dict[str, list[str]], other: dict[str, list[str]]
) -> list[str]:
    return [
        f"{table}: {len(rows)} rows in {name}, {len(other[table])} in the first design"
        + ("" if len(rows) != len(other[table]) else " (contents differ)")
        for table, rows in image.items()
        if rows != other[table]
    ]


def _fmt(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def _delta(now: float | None, before: float | None) -> str:
    if not now or not before:
        return "-"
    change = (now - before) / before * 100
    colour = "green" if change >= 0 else "red"
    return f"[{colour}]{change:+.1f}%[/]"


def values_per_table(stream: Stream) -> dict[str, int]:
    """Stage outputs per table label (what both writers are given), dead letters, prompts."""
    counts: dict[str, int] = {}
    for label, _, _ in naive_rows(stream, 0):
        counts[label] = counts.get(label, 0) + 1
    return counts


def add_value_rates(figures: dict[str, Any], values: dict[str, int]) -> None:
    """values/s per table: the table's stage outputs / the time spent writing them."""
    for name, entry in figures["tables"].items():
        entry["values"] = values.get(name, 0)
        seconds = entry["seconds"]
        entry["values_per_s"] = round(entry["values"] / seconds, 1) if seconds else None


def report(result: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    sink, naive, meta = result["sink"], result["naive"], result["meta"]
    title = f"sink vs per-row autocommit INSERT ({meta['events']:,} events)"
    table = Table(title=title)
    for header in (
        "table",
        "values",
        "sink rows",
        "sink rows/s",
        "sink values/s",
        "naive values/s",
        "speed-up",
    ):
        table.add_column(header, justify="left" if header == "table" else "right")
    if baseline:
        table.add_column("baseline sink values/s", justify="right")
        table.add_column("change", justify="right")
    for name in [*sorted(set(sink["tables"]) | set(naive["tables"])), WHOLE]:
        if name == WHOLE:
            table.add_section()
            rows = sum(t["rows"] for t in sink["tables"].values())
            s = {
                "values": sink["values"],
                "rows": rows,
                "rows_per_s": rows / sink["wall_s"],
                "values_per_s": sink["values_per_s"],
            }
            n_rate = naive["values_per_s"]
            base = baseline["sink"]["values_per_s"] if baseline else None
        else:
            s = sink["tables"].get(name, {})
            n_rate = naive["tables"].get(name, {}).get("rows_per_s")
            base = (
                (baseline["sink"]["tables"].get(name) or {}).get("values_per_s")
                if baseline
                else None
            )
        s_rate = s.get("values_per_s")
        speed = f"{s_rate / n_rate:,.1f}x" if s_rate and n_rate else "-"
        cells = [
            name,
            f"{s.get('values', 0):,}",
            f"{s.get('rows', 0):,}",
            _fmt(s.get("rows_per_s")),
            _fmt(s_rate),
            _fmt(n_rate),
            speed,
        ]
        if baseline:
            cells += [_fmt(base), _delta(s_rate, base)]
        table.add_row(*cells, style="bold" if name == WHOLE else None)
    console.print(table)
    console.print(
        f"{meta['events']:,} events -> {meta['records']:,} records holding {meta['values']:,} "
        f"stage outputs (published in {meta['publish_s']:.1f}s). Sink ({meta['designs'][0]}, "
        f"{meta['rounds']} round(s), times summed): {meta['batches']} batches per round "
        f"of {meta['values_per_batch']:,.0f} values on average; wall {sink['wall_s']:.1f}s, of "
        f"which {sink.get('write_s', 0):.1f}s in database transactions, first batch written "
        f"after {sink.get('first_batch_s', 0):.1f}s (group join included); rows = rows upserted "
        f"after in-batch coalescing. Naive: {naive['values']:,} statements in "
        f"{naive['wall_s']:.1f}s. Per table: rows or values / time in that table's statements; "
        f"'{WHOLE}': / wall time.",
        soft_wrap=True,
    )


def report_designs(result: dict[str, Any]) -> None:
    """values/s per table and whole of every design, and the first design's speed-up."""
    designs, meta = result["designs"], result["meta"]
    first, *others = list(designs)
    rounds = meta["rounds"]
    table = Table(title=f"write designs, same records ({rounds} round(s), order alternating)")
    table.add_column("table")
    table.add_column("values", justify="right")
    for design in designs:
        table.add_column(f"{design} values/s", justify="right")
    for other in others:
        table.add_column(f"{first} / {other}", justify="right")
    transactions = "in database transactions"
    names = sorted(set().union(*(d["tables"] for d in designs.values())))
    for name in [*names, transactions, WHOLE]:
        if name == WHOLE:
            rates = {d: f["values_per_s"] for d, f in designs.items()}
            values = designs[first]["values"] // rounds
        elif name == transactions:
            rates = {
                d: f["values"] / f["write_s"] if f["write_s"] else None for d, f in designs.items()
            }
            values = designs[first]["values"] // rounds
        else:
            rates = {
                d: (f["tables"].get(name) or {}).get("values_per_s") for d, f in designs.items()
            }
            values = (designs[first]["tables"].get(name) or {}).get("values", 0) // rounds
        if name == transactions:
            table.add_section()
        cells = [name, f"{values:,}", *(_fmt(rates[d]) for d in designs)]
        for other in others:
            a, b = rates[first], rates[other]
            cells.append(f"{a / b:.2f}x" if a and b else "-")
        table.add_row(*cells, style="bold" if name == WHOLE else None)
    console.print(table)
    walls = ", ".join(
        f"{d} {f['wall_s'] / rounds:.1f}s wall / {f['write_s'] / rounds:.1f}s in transactions"
        for d, f in designs.items()
    )
    console.print(
        f"Per round: {walls}. Load average at the end: {meta['load_average']}. Every design's "
        "tables equal the oracle and each other (all columns but payload_carried and those of "
        "DEFAULT now() or a sequence).",
        soft_wrap=True,
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    env = Settings(home=ROOT / ".logflume")
    tag = uuid.uuid4().hex[:8]

    def bench_settings(dsn: str) -> Settings:
        return Settings(
            kafka_bootstrap_servers=env.bootstrap_servers,
            database_url=dsn,
            topic_prefix=f"lf-bench-{tag}",
            partitions=args.partitions,
            sink_group=f"lf-bench-{tag}",
            sink_batch_values=args.batch_values,
        )

    settings = bench_settings(env.dsn)
    started = time.perf_counter()
    events = generate_events(args.events, seed=args.seed)
    stream = run_stages(
        settings, pack_events(events, settings.partitions, seed=args.seed), len(events)
    )
    # The stream and its oracle stay in memory all run (a sink holds one batch): out of the
    # collector's reach, or a full collection (~0.5-1 s over them) lands in a timed write.
    gc.collect()
    gc.freeze()
    console.print(
        f"generated {len(events):,} events and ran the stages in "
        f"{time.perf_counter() - started:.1f}s: {len(stream.records):,} records, "
        f"{stream.values:,} stage outputs"
    )
    names = [f"lf_bench_naive_{tag}"]
    await ensure_topics(settings)
    try:
        naive_dsn = await fresh_database(env.dsn, names[0])
        started = time.perf_counter()
        published = 0 if args.direct else await publish(settings, stream.records)
        publish_s = time.perf_counter() - started
        console.print(f"published {published:,} records in {publish_s:.1f}s")
        figures = {design: Figures() for design in args.designs}
        reports: dict[str, list[BatchReport]] = {design: [] for design in args.designs}
        images: dict[str, dict[str, list[str]]] = {}
        for round_ in range(args.rounds):  # the designs' order alternates between rounds
            for design in args.designs if round_ % 2 == 0 else args.designs[::-1]:
                name = f"lf_bench_{design}_{round_}_{tag}"
                names.append(name)
                dsn = await fresh_database(env.dsn, name)
                if args.direct:
                    run, run_reports = await run_direct(dsn, stream, args.batch_values, design)
                else:
                    run, run_reports = await run_sink(
                        bench_settings(dsn), published, stream.values, design
                    )
                console.print(f"sink ({design}, round {round_ + 1}) done in {run.wall_s:.1f}s")
                figures[design].merge(run)
                reports[design] += run_reports
                if problems := await check(dsn, stream):
                    raise SystemExit(
                        f"the {design} sink's tables differ from the oracle: {problems}"
                    )
                image = await table_image(dsn)
                first = images.setdefault(args.designs[0], image)
                if differences := image_differences(design, image, first):
                    raise SystemExit(f"the designs' tables differ: {differences}")
                images.setdefault(design, image)
                if not args.keep:
                    await drop_databases(env.dsn, [name])
        console.print("naive writer running...")
        rows = naive_rows(stream, args.naive_rows)
        naive_figures = await run_naive(naive_dsn, rows)
        if not args.naive_rows and (naive_problems := await check(naive_dsn, stream)):
            raise SystemExit(f"the naive writer's tables differ from the oracle: {naive_problems}")
    finally:
        if not args.keep:
            await drop_databases(env.dsn, names)
            await delete_topics(settings)
    per_table = {k: v * args.rounds for k, v in values_per_table(stream).items()}
    designs: dict[str, dict[str, Any]] = {}
    for design in args.designs:
        design_json = figures[design].to_json()
        add_value_rates(design_json, per_table)
        design_json["first_batch_s"] = round(figures[design].first_batch_s / args.rounds, 3)
        design_json["write_s"] = round(sum(r.write_seconds for r in reports[design]), 3)
        design_json["batches"] = len(reports[design])
        designs[design] = design_json
    batches = len(reports[args.designs[0]]) // args.rounds
    return {
        "meta": {
            "events": len(events),
            "records": len(stream.records),
            "direct": args.direct,
            "values": stream.values,
            "batches": batches,
            "values_per_batch": stream.values / max(1, batches),
            "batch_values_setting": args.batch_values,
            "partitions": args.partitions,
            "publish_s": round(publish_s, 3),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "naive_rows_limit": args.naive_rows,
            "designs": list(args.designs),
            "rounds": args.rounds,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "sink": designs[args.designs[0]],  # the first design (the sink's, by default)
        "designs": designs,
        "naive": naive_figures.to_json(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to generate")
    parser.add_argument("--partitions", type=int, default=12, help="partitions per topic")
    parser.add_argument("--batch-values", type=int, default=5000, help="sink_batch_values")
    parser.add_argument(
        "--naive-rows",
        type=int,
        default=0,
        help="stage outputs for the naive writer (0: all of them)",
    )
    parser.add_argument(
        "--designs",
        type=lambda text: tuple(text.split(",")),
        default=DESIGNS,
        help=f"write designs to run, the first reported against the others ({','.join(DESIGNS)})",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each design")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="the writer alone: fixed batches through write_batch, no Kafka, no Sink",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="save the figures to this file")
    parser.add_argument("--baseline", type=Path, help="compare with figures saved by --json")
    parser.add_argument("--keep", action="store_true", help="keep the databases and topics")
    args = parser.parse_args(argv)
    if (
        not args.designs
        or set(args.designs) - set(DESIGNS)
        or len(set(args.designs)) < len(args.designs)
    ):
        parser.error(f"--designs: distinct names among {', '.join(DESIGNS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    result = asyncio.run(main_async(args))
    report(result, baseline)
    if len(result["designs"]) > 1:
        report_designs(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"figures saved to {args.json}")


if __name__ == "__main__":
    main()
