"""``python -m bench.naive_sink``: the per-row baseline of ``bench/pipeline_bench.py``.

It consumes what the real sink consumes (entities, rollups, dead letters) and writes every
stage output with its own autocommit ``INSERT … ON CONFLICT … WHERE version <`` (the naive
writer of ``bench/sink_bench.py``: same guard, so the final rows are the same), then commits
the Kafka offsets of what it wrote. What a first implementation without batching does; only
the writing differs from the real sink, so the difference is the cost of per-row statements.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's root

import sinks.writer
from bench.sink_bench import NAIVE_DEAD_LETTER, naive_sql
from kernel.settings import Settings
from sinks.batch import Batch
from sinks.tables import TableSpec, removes, spec_for


def _statement(spec: TableSpec) -> str:
    """The naive upsert on the spec's own unique index (a log with a reference_id is one
    row per reference, as in the real sink)."""
    target = ", ".join(spec.conflict)
    if spec.conflict_where:
        target += f") WHERE ({spec.conflict_where}"
    return naive_sql(spec).replace("ON CONFLICT (project, id)", f"ON CONFLICT ({target})")


async def run(settings: Settings, stopping: asyncio.Event) -> None:
    topics = settings.topics
    roles = {topics.entities: "entities", topics.rollups: "rollups"}
    consumer = AIOKafkaConsumer(
        *roles,
        topics.deadletter,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.sink_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    conn = await asyncpg.connect(settings.dsn, timeout=30)
    statements: dict[TableSpec, str] = {}
    await consumer.start()
    try:
        while not stopping.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in fetched.items():
                for record in records:
                    if record.value is None:
                        continue
                    if tp.topic == topics.deadletter:
                        batch = Batch()
                        batch.add_dead_letter(tp.topic, tp.partition, record.offset, record.value)
                        d = batch.dead_letters[0]
                        await conn.execute(
                            NAIVE_DEAD_LETTER,
                            d.topic, d.partition, d.offset, d.index, d.event_id, d.reason, d.raw,
                        )  # fmt: skip
                        continue
                    role = roles[tp.topic]
                    for value in orjson.loads(record.value):
                        spec = spec_for(role, value)
                        if spec is None:
                            continue
                        if spec.table == "logs" and value.get("prompt") and value.get("prompt_id"):
                            one = Batch()
                            one.add_value(role, value)
                            await sinks.writer._prompts(conn, one, 60.0)
                        if removes(spec, value):  # as the sink: a deleted entity, an empty group
                            await sinks.writer._remove(conn, spec, [value], 60.0)
                            continue
                        if spec not in statements:
                            statements[spec] = _statement(spec)
                        statement = statements[spec]
                        await conn.execute(statement, *spec.row(value))
                        one = Batch()
                        one.add_value(role, value)
                        touched = sinks.writer._sessions_touched(one)
                        if touched:  # as the sink does: a session's span from its traces
                            await sinks.writer._session_spans(conn, touched, 60.0)
            if fetched:
                await consumer.commit()
    finally:
        await consumer.stop()
        await conn.close()


async def main() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await run(Settings(), stopping)


if __name__ == "__main__":
    asyncio.run(main())
