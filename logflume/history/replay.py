"""``logflume replay``: re-run the stages over the raw topic into a database.

Design (README, "Replay, export, import, verify"):

- **Isolated by construction.** The raw topic is read with manual partition assignment
  and no consumer group at all (``group_id=None``): nothing is committed anywhere, so the
  live processors' and sinks' groups and offsets are never touched. Nothing is produced
  either: the stages (:class:`processors.sequential.SequentialStages`, the same pure
  reducers as the Faust agents) run in this process and in its stage-1 shard processes
  (``shards.py``) over their own in-memory state, and their outputs go straight to
  PostgreSQL through the sink's own batch and writer (``sinks.batch``, ``sinks.writer``).
  The live entities, rollups and groups topics never see a replayed record.
- **Terminates.** The window's end offsets are snapshotted at the start (``window.py``).
- **Idempotent, so restartable.** Every output carries the ``version`` of its state and the
  sink's upserts only replace older versions; the final version of every row is a function
  of the events alone. A replay interrupted at any point (Ctrl-C, SIGKILL) leaves rows at
  intermediate versions, and running it again from the same ``--from`` rebuilds the state
  and brings every row to its final version: the same tables as an uninterrupted run.
  Dead letters are keyed by their raw-topic origin (stage 1) or a hash of their content
  (replay's own stages 2/3 and refused rows), so a second run does not add copies.
- **Fast.** Stage 1 runs in shard processes that own disjoint partitions (its state is per
  partition), overlapping stage 2 of the previous batch; stage 2 and the groups step run
  once per batch of raw records over the newest output of each entity (see
  ``processors.sequential``); a batch of stage outputs is coalesced to one row per key
  before one staged upsert per table (``sinks.writer``), written by a thread of its own
  while the next batch is computed (a queue of one).
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from kernel.clients import kafka_consumer, pg_connect
from kernel.runtime import tune_gc
from kernel.settings import Settings
from processors.codec import encode_dead_letter
from processors.sequential import Emitted, SequentialStages
from sinks.batch import Batch
from sinks.tables import TableSpec
from sinks.writer import write_batch

from .database import prepare_database
from .shards import Record, Stage1Shards
from .window import Window, resolve_window

__all__ = ["Replay", "ReplayProgress", "ReplayReport"]

_FETCH_RECORDS = 500  # raw records per stage batch (a record holds ~1-100 events)
_CLIENT_ID = "logflume-replay"


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Where a replay is: for the progress bar."""

    records_done: int
    records_total: int
    events_done: int
    lag: int  # raw records between the read position and the snapshotted end


@dataclass(slots=True)
class ReplayReport:
    """What a replay did, with where its time went."""

    window_records: int = 0
    records: int = 0
    events: int = 0
    outputs: int = 0  # stage outputs (entities, rollups)
    rows: int = 0  # rows upserted after coalescing within batches
    dead_letters: int = 0
    batches: int = 0
    seconds: float = 0.0
    stage_seconds: float = 0.0
    write_seconds: float = 0.0
    interrupted: bool = False
    table_rows: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class _StableOrigins(dict[tuple[TableSpec, tuple[str, ...]], tuple[str, int, int, int]]):
    """The origins ``write_batch`` gives rows PostgreSQL refuses. A replayed row has no
    Kafka record of its own, so its stand-in origin is a hash of its table and key: unique
    per row, and the same when the replay runs again (no second dead letter)."""

    def get(  # type: ignore[override]
        self, key: tuple[TableSpec, tuple[str, ...]], default: Any = None
    ) -> tuple[str, int, int, int]:
        spec, row_key = key
        digest = hashlib.blake2b("\x1f".join(row_key).encode(), digest_size=8).digest()
        return (f"replay.sink:{spec.table}", 0, int.from_bytes(digest, "big") >> 1, 0)


def count_events(value: bytes) -> int:
    """Events in a raw record, for progress only: the SDK, the gateway and ``import`` write
    records with orjson (no spaces), where ``"event_id":`` starts each event's id and cannot
    occur unescaped inside a string."""
    return value.count(b'"event_id":')


class _Reader:
    """Reads a window of the raw topic (no group: manual assignment and seeks)."""

    def __init__(self, consumer: AIOKafkaConsumer, window: Window) -> None:
        self._consumer = consumer
        self._window = window
        self._pending = {p for p in window.start if window.start[p] < window.end[p]}
        self._tps = {p: TopicPartition(window.topic, p) for p in self._pending}
        if self._tps:
            consumer.assign(list(self._tps.values()))
            for p, tp in self._tps.items():
                consumer.seek(tp, window.start[p])

    @property
    def done(self) -> bool:
        return not self._pending

    async def fetch(self) -> list[Record]:
        """The next records of the window (maybe none yet); pauses finished partitions."""
        fetched = await self._consumer.getmany(timeout_ms=500, max_records=_FETCH_RECORDS)
        records: list[Record] = []
        for tp, messages in fetched.items():
            end = self._window.end[tp.partition]
            for message in messages:
                if message.offset < end and message.value is not None:
                    records.append((tp.partition, message.offset, message.value))
            # position() skips control records, so a partition can end past its last record
            if await self._consumer.position(tp) >= end and tp.partition in self._pending:
                self._pending.discard(tp.partition)
                self._consumer.pause(tp)
        return records


class Replay:
    """One replay of ``[since, until)`` of the raw topic into the database at ``dsn``."""

    def __init__(
        self,
        settings: Settings,
        dsn: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_values: int = 50_000,
        workers: int = 1,
        on_progress: Callable[[ReplayProgress], None] | None = None,
        on_window: Callable[[Window], None] | None = None,
    ) -> None:
        self._settings = settings
        self._dsn = dsn
        self._since, self._until = since, until
        self._batch_values = batch_values
        self._workers = workers
        self._on_progress = on_progress
        self._on_window = on_window
        self._stopping = asyncio.Event()
        self.report = ReplayReport()

    def stop(self) -> None:
        """Finish the batch in hand, write what is computed, and return (Ctrl-C)."""
        self._stopping.set()

    async def run(self) -> ReplayReport:
        s = self._settings
        started = time.perf_counter()
        await prepare_database(self._dsn)
        consumer = kafka_consumer(
            s,
            group_id=None,  # no group: nothing to join, nothing committed (isolation)
            enable_auto_commit=False,
            client_id=_CLIENT_ID,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=max(s.max_record_bytes, 8 * 1024 * 1024),
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            window = await resolve_window(
                consumer, s.bootstrap_servers, s.topics.events, self._since, self._until
            )
            self.report.window_records = window.records
            if self._on_window is not None:
                self._on_window(window)
            await self._replay(consumer, window)
        finally:
            await consumer.stop()
        self.report.seconds = time.perf_counter() - started
        return self.report

    async def _replay(self, consumer: AIOKafkaConsumer, window: Window) -> None:
        s, report = self._settings, self.report
        tune_gc()
        stages = SequentialStages(
            s.topics,
            partitions=s.partitions,
            max_event_bytes=s.max_event_bytes,
            max_record_bytes=s.max_record_bytes,
        )
        shards = None
        if self._workers:
            shards = Stage1Shards(
                self._workers,
                topic_prefix=s.topic_prefix,
                partitions=s.partitions,
                max_event_bytes=s.max_event_bytes,
                max_record_bytes=s.max_record_bytes,
            )
        reader = _Reader(consumer, window)
        batches: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
        stopping_writer = threading.Event()
        writer = asyncio.get_running_loop().run_in_executor(
            None, self._write_thread, batches, stopping_writer
        )
        batch = self._new_batch()
        inflight: list[Record] | None = None  # handed to the shards, not collected yet
        try:
            while True:
                stopping = self._stopping.is_set()
                records = [] if stopping or reader.done else await reader.fetch()
                if shards is None:
                    done, emitted = records, None
                    if records:
                        tick = time.perf_counter()
                        emitted = stages.run_batch(records)
                        report.stage_seconds += time.perf_counter() - tick
                else:
                    done, emitted = inflight or [], None
                    if inflight is not None:
                        result = await shards.collect()
                        emitted = Emitted(result.entities, [], result.dead_letters)
                    inflight = None
                    if records:  # stage 1 of these runs while this batch goes downstream
                        await shards.submit(records)
                        inflight = records
                    if emitted is not None:
                        tick = time.perf_counter()
                        stages.downstream(emitted.entities, emitted)
                        report.stage_seconds += time.perf_counter() - tick
                if emitted is None:
                    if inflight is None and (stopping or reader.done):
                        break
                    await self._check_alive(writer)
                    continue
                self._add(batch, emitted)
                report.records += len(done)
                report.events += sum(count_events(value) for _, _, value in done)
                if len(batch) >= self._batch_values:
                    await self._hand_over(batches, writer, batch)
                    batch = self._new_batch()
                if self._on_progress is not None:
                    lag = window.records - report.records
                    progress = ReplayProgress(report.records, window.records, report.events, lag)
                    self._on_progress(progress)
            report.interrupted = not reader.done
            if len(batch):
                await self._hand_over(batches, writer, batch)
            await self._hand_over(batches, writer, None)
            await writer
        finally:
            stopping_writer.set()  # after an error: the writer ends after its batch in hand
            if shards is not None:
                shards.close()

    @staticmethod
    def _new_batch() -> Batch:
        batch = Batch()
        batch.origins = _StableOrigins()
        return batch

    def _add(self, batch: Batch, emitted: Emitted) -> None:
        """Stage outputs into the sink's batch (coalesced per row); dead letters through
        the live encoding, so that their stored bytes are the same as the live path's."""
        for value in emitted.entities:
            batch.add_value("entities", value)
        for value in emitted.rollups:
            batch.add_value("rollups", value)
        max_bytes = self._settings.max_record_bytes
        for letter in emitted.dead_letters:
            origin = letter.origin
            encoded = encode_dead_letter(letter, max_bytes)
            batch.add_dead_letter(origin.topic, origin.partition, origin.offset, encoded)
        self.report.outputs += len(emitted.entities) + len(emitted.rollups)
        self.report.dead_letters += len(emitted.dead_letters)

    async def _hand_over(
        self, batches: queue.Queue[Batch | None], writer: asyncio.Future[None], batch: Batch | None
    ) -> None:
        """Queue a batch (None: the end) for the writer; a failed writer raises here at once."""
        while True:
            if writer.done():
                writer.result()  # raises the writer's error
                raise RuntimeError("the replay writer stopped early")
            try:
                batches.put_nowait(batch)
                return
            except queue.Full:  # the writer is a batch behind: the stages wait for it
                await asyncio.sleep(0.01)

    async def _check_alive(self, writer: asyncio.Future[None]) -> None:
        if writer.done():
            writer.result()

    def _write_thread(self, batches: queue.Queue[Batch | None], stopping: threading.Event) -> None:
        """The database writes, on a thread of their own with their own event loop and
        connection. On the main loop, every statement of a batch waited for the stage work
        in hand (hundreds of milliseconds at a time) before the next could start, and
        PostgreSQL idled meanwhile; a thread gets the GIL back within the switch interval
        while the stages run, so PostgreSQL works beside them."""
        asyncio.run(self._writer(batches, stopping))

    async def _writer(self, batches: queue.Queue[Batch | None], stopping: threading.Event) -> None:
        report = self.report
        conn = await pg_connect(self._dsn, command_timeout=600)
        try:
            while not stopping.is_set():
                try:
                    batch = batches.get(timeout=0.1)  # nothing else runs on this loop
                except queue.Empty:
                    continue
                if batch is None:
                    return
                tick = time.perf_counter()
                result = await write_batch(conn, batch, timeout=600)
                report.write_seconds += time.perf_counter() - tick
                report.batches += 1
                for table, rows in result.rows.items():
                    report.table_rows[table] = report.table_rows.get(table, 0) + rows
                    report.rows += rows
        finally:
            await conn.close()
