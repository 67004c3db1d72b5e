"""The staged write (binary COPY into a session's staging tables, then one upsert per table)
stores what the unnest write stores; a batch with a row PostgreSQL refuses is written the
unnest way, with the same dead letters; a session that lost its staging tables makes them
again."""

from __future__ import annotations

import asyncpg
import pytest

import sinks.writer
from logflume.synthetic import generate_events, pack_events
from sinks.batch import Batch
from sinks.tables import LOGS
from sinks.writer import WriteResult, write_batch
from tests.integration.sinks.harness import SinkEnv
from tests.integration.sinks.stream import (
    SINK_TABLES,
    Stream,
    batches,
    contents,
    oracle_mismatches,
    run_stages,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STAGING = "SELECT relname FROM pg_class WHERE relname LIKE 'lf_stage_%' AND relpersistence = 't'"


def _stream(sink_env: SinkEnv, events: int, seed: int) -> Stream:
    settings = sink_env.settings
    made = generate_events(events, seed=seed)
    return run_stages(settings, pack_events(made, settings.partitions), len(made))


class _Spy:
    """Counts the batches each write path finished (staged, unnest) and how they ended."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ends: list[tuple[bool, str]] = []
        write = sinks.writer._write_batch

        async def spied(
            conn: asyncpg.Connection, batch: Batch, timeout: float, *, staged: bool
        ) -> WriteResult:
            try:
                result = await write(conn, batch, timeout, staged=staged)
            except Exception as exc:
                self.ends.append((staged, type(exc).__name__))
                raise
            self.ends.append((staged, "ok"))
            return result

        monkeypatch.setattr(sinks.writer, "_write_batch", spied)


async def test_staged_and_unnest_writes_store_the_same_rows(
    sink_env: SinkEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _stream(sink_env, 1500, seed=5)
    spy = _Spy(monkeypatch)
    conn = await asyncpg.connect(sink_env.settings.dsn, timeout=30)  # a session of its own
    try:
        for batch in batches(stream, 700):
            await write_batch(conn, batch)
        staging = {r["relname"] for r in await conn.fetch(STAGING)}
        # Every table was written staged (the first batch made the staging tables) and the
        # staging tables are empty after the commit.
        assert spy.ends[:2] == [(True, "UndefinedTableError"), (True, "ok")]
        assert set(spy.ends[2:]) == {(True, "ok")}
        assert len(staging) >= 8
        for name in staging:
            assert await conn.fetchval(f'SELECT count(*) FROM pg_temp."{name}"') == 0
    finally:
        await conn.close()
    assert await oracle_mismatches(sink_env.conn, stream.oracle) == []
    staged = await contents(sink_env.conn)

    tables = ", ".join(f'"{t}"' for t in SINK_TABLES)
    await sink_env.conn.execute(f"TRUNCATE {tables}")
    for batch in batches(stream, 700):
        await write_batch(sink_env.conn, batch, staged=False)
    assert await contents(sink_env.conn) == staged


async def test_a_refused_row_sends_its_batch_the_unnest_way(
    sink_env: SinkEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _stream(sink_env, 200, seed=3)
    good = next(batches(stream, 10**9))
    log = next(iter(good.rows[LOGS].values()))
    entities = sink_env.settings.topics.entities
    bad = Batch()
    bad.add_value("entities", {**log, "id": "data_fine"}, (entities, 0, 9, 0))
    bad.add_value(
        "entities", {**log, "id": "data_refused", "start_time": "soon"}, (entities, 0, 9, 1)
    )
    spy = _Spy(monkeypatch)
    conn = sink_env.conn
    result = await write_batch(conn, bad)
    assert result.refused == 1
    assert spy.ends[-2:] == [(True, "_StagedRefused"), (False, "ok")]
    letter = await conn.fetchrow(
        'SELECT topic, "partition", "offset", event_index, reason FROM dead_letters'
        " WHERE event_id = 'data_refused'"
    )
    assert tuple(letter)[:4] == (entities, 0, 9, 1)
    assert letter["reason"].startswith("logs: PostgreSQL refused the row")
    ids = await conn.fetch("SELECT id FROM logs WHERE id IN ('data_fine', 'data_refused')")
    assert [r["id"] for r in ids] == ["data_fine"]

    # The session goes on staged; staging tables it lost (as a rollback of the batch that
    # made them would) are made again.
    for name in [r["relname"] for r in await conn.fetch(STAGING)]:
        await conn.execute(f'DROP TABLE pg_temp."{name}"')
    await write_batch(conn, good)
    assert spy.ends[-2:] == [(True, "UndefinedTableError"), (True, "ok")]
    problems = await oracle_mismatches(conn, stream.oracle)
    assert [p for p in problems if "data_fine" not in p] == []
