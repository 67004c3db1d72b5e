"""The sink: consume stage outputs in batches, write each batch in one transaction, then
commit the Kafka offsets (never before the database commit).

Batches end by size (``sink_batch_values``) or age (``sink_linger_ms``). When PostgreSQL
is unreachable the consumer pauses its partitions (nothing more is read, so memory stays
bounded by one batch), retries the same batch with capped, jittered backoff, and resumes
once it is written; it logs one line when the outage starts and one when it ends. A batch
redelivered after a crash or rebalance rewrites the same versions: a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from kernel.backoff import Backoff
from kernel.clients import kafka_consumer, pg_pool
from kernel.dberrors import UNREACHABLE
from kernel.settings import Settings

from .batch import Batch
from .writer import WriteResult, write_batch

__all__ = ["RETRYABLE", "BatchReport", "Sink"]

log = logging.getLogger(__name__)

# Failures of the connection or the server, not of the data: retry the whole batch. A
# deadlock with another sink (two sinks upsert the same traces and sessions rows in
# different orders when their partitions of the entities and rollups topics differ) rolls
# back one batch: written again, idempotently, instead of ending the process.
RETRYABLE: tuple[type[BaseException], ...] = (
    *UNREACHABLE,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
_RETRY_FIRST_S = 0.4  # the first wait of an outage, then doubling up to sink_retry_max_s


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one batch did, for progress bars, metrics and benchmarks."""

    records: int
    values: int
    rows: dict[str, int]
    refused: int
    write_seconds: float


class Sink:
    """One sink consumer. ``run()`` until ``stop()``; safe to run several in one group."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_batch: Callable[[BatchReport], None] | None = None,
        group_id: str | None = None,
        staged: bool = True,
    ) -> None:
        self._settings = settings
        self._staged = staged  # False: the unnest write path (a benchmark's baseline)
        self._on_batch = on_batch
        self._group_id = group_id or settings.sink_group
        topics = settings.topics
        self._roles = {topics.entities: "entities", topics.rollups: "rollups"}
        self._deadletter = topics.deadletter
        self._stopping = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        # Half jitter: a delay drawn from [d/2, d] (sinks of one group retry apart).
        self._retry = Backoff(_RETRY_FIRST_S, settings.sink_retry_max_s, jitter=0.5)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        s = self._settings
        consumer = kafka_consumer(
            s,
            *self._roles,
            self._deadletter,
            group_id=self._group_id,
            group_instance_id=(
                f"{self._group_id}-{s.sink_instance_id}" if s.sink_instance_id else None
            ),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max(100, s.sink_batch_values),
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=s.sink_fetch_wait_ms,
        )
        await consumer.start()
        try:
            while not self._stopping.is_set():
                batch = await self._collect(consumer)
                if batch.records:
                    await self._write(consumer, batch)
                    await self._commit(consumer, batch)
        finally:
            await consumer.stop()
            if self._pool is not None:
                await self._pool.close()

    async def _collect(self, consumer: AIOKafkaConsumer) -> Batch:
        """Read until the batch is full, old enough, or the sink is stopping."""
        s = self._settings
        batch = Batch()
        deadline: float | None = None
        while len(batch) < s.sink_batch_values and not self._stopping.is_set():
            wait_ms = 500 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=s.sink_batch_values)
            for tp, records in fetched.items():
                for record in records:
                    self._add(batch, tp.topic, tp.partition, record.offset, record.value)
            if batch.records and deadline is None:
                deadline = time.monotonic() + s.sink_linger_ms / 1000
            if deadline is not None and time.monotonic() >= deadline:
                break
        return batch

    def _add(
        self, batch: Batch, topic: str, partition: int, offset: int, value: bytes | None
    ) -> None:
        batch.track(topic, partition, offset)
        if value is None:
            return
        if topic == self._deadletter:
            batch.add_dead_letter(topic, partition, offset, value)
            return
        try:
            items = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            letter = _letter(
                topic, partition, offset, -1, f"record is not valid JSON: {exc}", value
            )
            batch.add_dead_letter(topic, partition, offset, letter)
            return
        for index, item in enumerate(items if isinstance(items, list) else [items]):
            try:
                origin = (topic, partition, offset, index)
                taken = isinstance(item, dict) and batch.add_value(self._roles[topic], item, origin)
                reason = f"no table takes this value (kind={_kind(item)!r})"
            except (KeyError, TypeError) as exc:
                taken, reason = False, f"malformed stage output: missing or bad {exc}"
            if not taken:
                letter = _letter(topic, partition, offset, index, reason, value)
                batch.add_dead_letter(topic, partition, offset, letter)

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            # min_size=0: no background reconnects (asyncpg >= 0.32 keeps a connection floor
            # and logs a warning with a traceback for every failed attempt while the
            # database is down); the next write connects, and the outage is logged once.
            self._pool = await pg_pool(
                self._settings, min_size=0, max_size=1, timeout=10, command_timeout=60
            )
        return self._pool

    async def _write(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Write the batch, retrying while PostgreSQL is unreachable (partitions paused)."""
        attempt, outage_started = 0, 0.0
        while True:
            started = time.perf_counter()
            try:
                pool = await self._connection_pool()
                async with pool.acquire() as conn:
                    result = await write_batch(conn, batch, staged=self._staged)
                break
            except RETRYABLE as exc:
                if attempt == 0:
                    outage_started = time.monotonic()
                    self._retry.reset()
                    paused = consumer.assignment()
                    consumer.pause(*paused)
                    log.warning(
                        "PostgreSQL unavailable (%s); paused %d partitions, retrying",
                        type(exc).__name__,
                        len(paused),
                    )
                await self._drop_pool()
                attempt += 1
                await self._backoff(consumer, self._retry.next())
                if self._stopping.is_set():
                    raise
        if attempt:
            consumer.resume(*consumer.assignment())
            log.warning(
                "PostgreSQL back after %.1fs (%d retries); partitions resumed",
                time.monotonic() - outage_started,
                attempt,
            )
        self._report(batch, result, time.perf_counter() - started)

    async def _backoff(self, consumer: AIOKafkaConsumer, delay_s: float) -> None:
        """Wait ``delay_s`` (a step of the capped, jittered backoff) and keep polling
        meanwhile (paused partitions give nothing) so that the group does not evict this
        consumer during a long outage.

        A rebalance during the outage hands over a fresh, unpaused assignment: pause it
        again before every poll, and seek back over anything a poll still returned, so that
        no record is read and dropped (the next batches would commit past it)."""
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            consumer.pause(*consumer.assignment())
            timeout_ms = int(min(1.0, max(0.0, deadline - time.monotonic())) * 1000)
            fetched = await consumer.getmany(timeout_ms=timeout_ms)
            for tp, records in fetched.items():
                if records:
                    consumer.seek(tp, records[0].offset)

    async def _drop_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        offsets = {TopicPartition(t, p): offset for (t, p), offset in batch.offsets.items()}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took partitions away: their new owner re-reads from the last
            # commit and rewrites the same versions, which changes nothing.
            log.info("offsets not committed after a rebalance: %s", type(exc).__name__)
        except KafkaError as exc:
            log.warning("offset commit failed (%s); the batch will be re-read", type(exc).__name__)

    def _report(self, batch: Batch, result: WriteResult, seconds: float) -> None:
        if self._on_batch is not None:
            report = BatchReport(batch.records, batch.values, result.rows, result.refused, seconds)
            self._on_batch(report)


def _kind(item: object) -> object:
    return item.get("kind") if isinstance(item, dict) else type(item).__name__


def _letter(
    topic: str, partition: int, offset: int, index: int, reason: object, value: bytes
) -> bytes:
    """A dead-letter record for a stage output the sink cannot use."""
    letter = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "index": index,
        "reason": str(reason),
        "raw": value[:65536].decode("utf-8", errors="replace"),
    }
    return orjson.dumps(letter)
