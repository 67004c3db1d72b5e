"""Issue 7's must-show, against the real broker and PostgreSQL: a history processed live,
then replayed (the real ``logflume replay`` command) into an empty database, into the live
one, and killed halfway then run again; ``logflume verify`` judges each."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from logflume.history.replay import Replay
from logflume.history.verify import verify
from tests.integration.replay.conftest import LiveHistory
from tests.integration.replay.history import logflume, spawn_logflume
from tests.integration.sinks.stream import oracle_mismatches, run_stages, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

# Tables a generated history fills (dead letters: the generator's invalid events).
FILLED = {"prompts", "prompt_versions", "logs", "feedback", "traces", "spans", "generations",
          "sessions", "prompt_version_stats", "dead_letters"}  # fmt: skip


async def _raw_records(live: LiveHistory) -> list[tuple[int, bytes]]:
    """The raw topic as (partition, value), each partition in offset order."""
    settings = live.settings
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topics.events, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[tuple[int, bytes]] = []
        while len(found) < sum(ends.values()):
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                found += [(tp.partition, r.value) for r in batch if r.value is not None]
        return found
    finally:
        await consumer.stop()


def _replay(live: LiveHistory, *args: str) -> subprocess.CompletedProcess[str]:
    result = logflume(live.settings, live.home, "replay", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


async def test_replay_into_an_empty_database_equals_live(live: LiveHistory) -> None:
    target = live.new_database("empty")
    result = _replay(live, "--database-url", target)
    assert f"({live.events:,} events)" in result.stdout  # every generated event was read

    checked = logflume(live.settings, live.home, "verify", live.dsn, target)
    assert checked.returncode == 0, checked.stdout[-5000:]
    assert "identical logical content" in checked.stdout

    outcome = await verify(live.dsn, target, events_topic=live.settings.topics.events)
    assert outcome.equal
    assert {t.table for t in outcome.tables if t.rows_a > 0} == FILLED
    # Independently of the live path: the replayed tables are what the pure stages, run
    # record by record as the Faust agents would, say the sink must store.
    stream = run_stages(live.settings, await _raw_records(live))
    conn = await asyncpg.connect(target, timeout=30)
    try:
        assert await oracle_mismatches(conn, stream.oracle) == []
    finally:
        await conn.close()


async def test_replay_into_the_live_database_changes_nothing(live: LiveHistory) -> None:
    conn = await asyncpg.connect(live.dsn, timeout=30)
    try:
        before = await snapshot(conn)  # every column, updated_at and stored_at included
        sums_before = await verify(live.dsn, live.dsn, events_topic=live.settings.topics.events)
        _replay(live)  # default target: the live database (DATABASE_URL)
        after = await snapshot(conn)
        sums_after = await verify(live.dsn, live.dsn, events_topic=live.settings.topics.events)
    finally:
        await conn.close()
    assert sum(len(rows) for rows in before.values()) > live.events // 2
    assert after == before
    assert [t.checksum_a for t in sums_after.tables] == [t.checksum_a for t in sums_before.tables]


async def test_a_replay_killed_halfway_and_run_again_is_identical(live: LiveHistory) -> None:
    target = live.new_database("killed")
    # Small transactions, so that some commit long before the end.
    args = ["replay", "--database-url", target, "--batch-values", "300"]
    process = spawn_logflume(live.settings, live.home, *args)
    try:
        await _wait_for_rows(target, process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL

    halfway = await verify(live.dsn, target, events_topic=live.settings.topics.events)
    assert not halfway.equal  # really killed halfway
    assert sum(t.rows_b for t in halfway.tables) > 0

    _replay(live, "--database-url", target)
    checked = logflume(live.settings, live.home, "verify", live.dsn, target)
    assert checked.returncode == 0, checked.stdout[-5000:]


async def _wait_for_rows(dsn: str, process: subprocess.Popen[bytes]) -> None:
    """Until the replay has committed some rows (its database exists and has logs)."""
    async with asyncio.timeout(120):
        while process.poll() is None:
            try:
                conn = await asyncpg.connect(dsn, timeout=5)
            except (asyncpg.InvalidCatalogNameError, OSError):
                await asyncio.sleep(0.02)
                continue
            try:
                while process.poll() is None:
                    try:
                        if await conn.fetchval("SELECT count(*) FROM logs"):
                            return
                    except asyncpg.UndefinedTableError:
                        pass  # migrations still running
                    await asyncio.sleep(0.01)
            finally:
                await conn.close()
    raise AssertionError(f"the replay ended before it was killed ({process.returncode})")


async def test_verify_names_the_first_differing_rows(live: LiveHistory) -> None:
    target = live.new_database("tampered")
    _replay(live, "--database-url", target)
    conn = await asyncpg.connect(target, timeout=30)
    try:
        log_id, tokens = await conn.fetchrow(
            "UPDATE logs SET output_tokens = output_tokens + 1 "
            "WHERE id = (SELECT min(id) FROM logs WHERE output_tokens IS NOT NULL) "
            "RETURNING id, output_tokens"
        )
        span = await conn.fetchrow("DELETE FROM spans WHERE id = (SELECT min(id) FROM spans) "
                                   "RETURNING project, id")  # fmt: skip
        output = await conn.fetchval(
            "UPDATE logs SET output = 'tampered secret ' || coalesce(output, '') "
            "WHERE id = $1 RETURNING output",
            log_id,
        )
    finally:
        await conn.close()

    checked = logflume(live.settings, live.home, "verify", live.dsn, target)
    assert checked.returncode == 1
    out = checked.stdout
    key = f'["{span["project"]}", "{span["id"]}"]'  # as jsonb prints the key
    assert f"output_tokens: A={tokens - 1}  B={tokens}" in out, out[-3000:]
    assert log_id in out
    assert f"spans {key} (only in A)" in out, out[-3000:]
    assert "1 rows differ" in out
    shown = next(line for line in out.splitlines() if line.strip().startswith("output: A="))
    assert "<payload: " in shown, out[-3000:]  # payloads show as fingerprints only
    assert "tampered secret" not in out and output not in out
    assert "error: the databases differ" in checked.stderr
    assert "***" in out and "logflume:logflume@" not in out  # passwords are masked


async def test_a_refused_write_ends_the_replay_with_its_error(
    live: LiveHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writes run on a thread of their own: their failure still ends the replay, with the
    writer's own error, and nothing is written after it."""

    async def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database refused the batch")

    monkeypatch.setattr("logflume.history.replay.write_batch", refuse)
    replay = Replay(live.settings, live.new_database("refused"), batch_values=300)
    with pytest.raises(RuntimeError, match="refused the batch"):
        async with asyncio.timeout(120):
            await replay.run()
    assert replay.report.batches == 0
