"""PostgreSQL stopped for 30 s in the middle of a stream, then started again: the sink
pauses its partitions (reads nothing more, holds one batch), its process logs one line when
the outage starts and one when it ends (the database driver included), and the final tables
equal the oracle: nothing lost, nothing doubled. Stopping PostgreSQL is only possible with
the project's own local cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

import kernel.clients
from kernel.settings import Settings
from logflume.services.postgres import LocalPostgres
from logflume.synthetic import generate_events, pack_events
from sinks.batch import Batch
from sinks.consumer import Sink
from tests.integration.sinks.harness import SinkEnv, eventually, running_sink
from tests.integration.sinks.stream import oracle_mismatches, publish, run_stages
from tests.services import Services, base_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

OUTAGE_S = 30.0
IDLE_S = 8.0  # of the outage, before the stream goes on
# The loggers of the sink process that an outage may speak through (aiokafka is not
# concerned: the broker stays up).
SINK_LOGGERS = ("sinks", "asyncpg")
log = logging.getLogger(__name__)


class CountingConsumer(AIOKafkaConsumer):
    """The sink's consumer, counting the records ``getmany`` hands out."""

    instances: ClassVar[list[CountingConsumer]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivered = 0
        CountingConsumer.instances.append(self)

    async def getmany(self, *partitions: Any, **kwargs: Any) -> Any:
        fetched = await super().getmany(*partitions, **kwargs)
        self.delivered += sum(len(records) for records in fetched.values())
        return fetched


class ProbedSink(Sink):
    """A sink that tells how many collected batches it holds (not yet written) and how
    many Kafka records it has taken into batches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held = self.max_held = self.max_values_held = self.taken = 0

    def _add(
        self, batch: Batch, topic: str, partition: int, offset: int, value: bytes | None
    ) -> None:
        self.taken += 1
        super()._add(batch, topic, partition, offset, value)

    async def _collect(self, consumer: AIOKafkaConsumer) -> Batch:
        batch = await super()._collect(consumer)
        if batch.records:
            self.held += 1
            self.max_held = max(self.max_held, self.held)
            self.max_values_held = max(self.max_values_held, len(batch))
        return batch

    async def _write(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        try:
            await super()._write(consumer, batch)
        finally:
            self.held -= 1


def _local_postgres(services: Services) -> LocalPostgres:
    settings = base_settings()
    local = LocalPostgres(settings)
    if settings.postgres_is_external or services.dsn != settings.dsn or not local.is_running():
        pytest.skip(
            "stopping PostgreSQL needs the project's own local cluster (logflume up); the "
            "services fixture got an external or container PostgreSQL, which a test must not stop"
        )
    return local


async def test_postgres_outage_mid_stream_loses_nothing_and_doubles_nothing(
    services: Services,
    sink_env: SinkEnv,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = _local_postgres(services)
    for name in SINK_LOGGERS:
        caplog.set_level(logging.INFO, logger=name)
    monkeypatch.setattr(CountingConsumer, "instances", [])
    monkeypatch.setattr(kernel.clients, "AIOKafkaConsumer", CountingConsumer)  # the sink's
    settings = sink_env.settings
    events = generate_events(3000, seed=5)
    stream = run_stages(settings, pack_events(events, settings.partitions), len(events))
    third = len(stream.records) // 3
    before, during, after = (
        stream.records[:third],
        stream.records[third : 2 * third],
        stream.records[2 * third :],
    )

    async with running_sink(settings, sink_class=ProbedSink) as running:
        sink = running.sink
        assert isinstance(sink, ProbedSink)
        published = await publish(settings, before)
        await running.wait_records(published)
        consumer = CountingConsumer.instances[0]
        stopped = time.monotonic()
        try:
            await asyncio.to_thread(local.stop)
            # The database goes down while the sink is idle; a while later the stream goes
            # on (the sink only notices the outage when it has a batch to write).
            await asyncio.sleep(IDLE_S)
            assert _sink_lines(caplog) == []
            published += await publish(settings, during)

            async def paused() -> bool:
                return bool(consumer.assignment()) and consumer.paused() == consumer.assignment()

            await eventually(paused, timeout_s=15, what="the sink to pause its partitions")
            taken_at_pause = sink.taken
            polled_at_pause = consumer.delivered
            # Another sink joins the group and leaves again: two rebalances mid-outage, each
            # handing the sink a fresh (unpaused) assignment, which it must pause again.
            await _join_and_leave(settings, consumer)
            await eventually(paused, timeout_s=5, what="the sink to pause its new assignment")
            while time.monotonic() - stopped < OUTAGE_S:
                assert await paused(), "a partition was resumed while PostgreSQL is down"
                assert sink.held <= 1
                await asyncio.sleep(0.5)
            # Nothing more was taken in while paused: memory holds one batch at most (what
            # a poll returned around a rebalance was given back with a seek, not kept).
            assert sink.taken == taken_at_pause
            assert sink.max_held == 1
            assert len(_sink_lines(caplog)) == 1
            polled_back = consumer.delivered - polled_at_pause
        finally:
            await asyncio.to_thread(local.start)
        restarted = time.monotonic()
        published += await publish(settings, after)
        await running.wait_records(published, timeout_s=60)
        caught_up = time.monotonic()
        await running.stop()
    assert not consumer.paused()

    lines = _sink_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("PostgreSQL unavailable (")
    assert lines[1].startswith("PostgreSQL back after ")
    log.info(
        "outage %.1fs; caught up %.1fs after the restart; held at most %d values; %d records "
        "polled around the rebalances and sought back; %s",
        restarted - stopped,
        caught_up - restarted,
        sink.max_values_held,
        polled_back,
        lines,
    )

    conn = await asyncpg.connect(settings.dsn, timeout=30)
    try:
        assert await oracle_mismatches(conn, stream.oracle) == []
        letters = await conn.fetchval("SELECT count(*) FROM dead_letters")
        assert letters == len(stream.oracle.dead_letters) > 0
    finally:
        await conn.close()


async def _join_and_leave(settings: Settings, consumer: AIOKafkaConsumer) -> None:
    topics = settings.topics
    other = AIOKafkaConsumer(
        topics.entities,
        topics.rollups,
        topics.deadletter,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.sink_group,
        enable_auto_commit=False,
    )
    await other.start()

    async def shared() -> bool:
        return bool(other.assignment()) and len(consumer.assignment()) < 3 * settings.partitions

    async def all_back() -> bool:
        return len(consumer.assignment()) == 3 * settings.partitions

    try:
        await eventually(shared, timeout_s=20, what="a rebalance that shares the partitions")
    finally:
        await other.stop()
    await eventually(all_back, timeout_s=20, what="the sink to get every partition back")


def _sink_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(SINK_LOGGERS)]
