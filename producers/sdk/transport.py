"""Where encoded events go: a two-method Protocol, the aiokafka transport and in-memory twins.

``send(events)`` packs events into records the way architecture sections 3-4 describe (each
record holds events that route, by Kafka's murmur2 on their routing key, to the record's
partition; the value is ``pack_record(...)``) and returns once Kafka acknowledged every
record. The transport builds the records because it is what knows the topic's partition
count (from the broker's metadata). A failure raises :class:`SendFailure` naming the events
to retry and the events the broker rejected for good; events of records that were
acknowledged are in neither, so a retry re-sends as little as possible.

A transport built with ``packed=False`` sends each event as a record of its own, its bytes
as the value: the format of topics whose records hold one object (the dead-letter topic,
which the gateway also writes).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerClosed

from kernel.logs import hide_payload_debug
from producers.contract import pack_record, partition_for

from .config import SDKSettings
from .encoding import Encoded, EncodedBatch

__all__ = [
    "KafkaTransport",
    "MemoryTransport",
    "Record",
    "SendFailure",
    "Transport",
    "build_records",
    "group_by_partition",
    "pack_groups",
]

log = logging.getLogger(__name__)

# Events grouped by partition in one step of the event loop: a whole batch (2,000 events)
# held the GIL for ~1-3 ms, a pause of any application thread that wanted it meanwhile
# (bench/sdk_bench.py, worker steps). The records are packed once the batch is grouped, so
# a record holds a whole batch's events of its partition, not a slice's.
_GROUP_SLICE = 128


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record: events of one partition, packed."""

    partition: int
    value: bytes
    events: EncodedBatch


def build_records(
    events: Sequence[Encoded],
    partitions: int,
    *,
    max_bytes: int,
    max_events: int,
    packed: bool = True,
) -> list[Record]:
    """Group events by partition, in order, into records of at most ``max_events`` events
    and ``max_bytes`` bytes (one event larger than that gets a record of its own).
    ``packed=False``: one record per event, whose value is the event's bytes unchanged."""
    if not packed:
        return [Record(partition_for(key, partitions), data, EncodedBatch([key], [data]))
                for key, data in events]  # fmt: skip
    groups: dict[int, EncodedBatch] = {}
    group_by_partition(events, partitions, groups)
    return pack_groups(groups, max_bytes=max_bytes, max_events=max_events)


def group_by_partition(
    events: Sequence[Encoded], partitions: int, groups: dict[int, EncodedBatch]
) -> None:
    """Append each event to its partition's batch in ``groups``, in order (the per-event
    part of :func:`build_records`, which a caller may run a slice at a time)."""
    for key, data in events:
        partition = partition_for(key, partitions)
        group = groups.get(partition)
        if group is None:
            groups[partition] = group = EncodedBatch()
        group.keys.append(key)
        group.values.append(data)


def pack_groups(
    groups: dict[int, EncodedBatch], *, max_bytes: int, max_events: int
) -> list[Record]:
    """The records of events grouped by partition (see :func:`build_records`)."""
    records: list[Record] = []
    for partition, group in groups.items():
        start, size = 0, 2
        for index, data in enumerate(group.values):
            if index > start and (index - start >= max_events or size + len(data) + 1 > max_bytes):
                records.append(_record(partition, group[start:index]))
                start, size = index, 2
            size += len(data) + 1
        records.append(_record(partition, group[start:]))
    return records


def _record(partition: int, events: EncodedBatch) -> Record:
    return Record(partition, pack_record(events.values), events)


class SendFailure(Exception):
    """Some events were not acknowledged: ``retry`` them later; ``rejected`` never will be
    (the broker refused them, e.g. a record too large for it). Both hold the very bytes
    objects of the events the transport was given (not copies): the gateway's publisher
    tells whose events failed by their identity."""

    def __init__(
        self, reason: str, retry: Sequence[Encoded], rejected: Sequence[Encoded] = ()
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = list(retry)
        self.rejected = list(rejected)


class Transport(Protocol):
    async def send(self, events: Sequence[Encoded]) -> None:
        """Deliver ``events``; raise :class:`SendFailure` for those not acknowledged."""
        ...

    async def close(self) -> None:
        """Release connections; pending sends may fail."""
        ...


class KafkaTransport:
    """aiokafka: idempotent producer, acks=all, compression, linger; explicit partitions."""

    def __init__(
        self, settings: SDKSettings, *, compression: str | None, packed: bool = True
    ) -> None:
        self._settings = settings
        self._compression = compression
        self._packed = packed
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None

    async def _ready(self) -> AIOKafkaProducer:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._producer is not None:
                return self._producer
            s = self._settings
            hide_payload_debug()  # aiokafka's DEBUG prints every record: never payloads
            producer = AIOKafkaProducer(
                bootstrap_servers=s.bootstrap_servers,
                client_id=s.client_id,
                acks="all",
                enable_idempotence=True,
                compression_type=self._compression,
                linger_ms=s.linger_ms,
                max_batch_size=max(s.record_max_bytes * 2, 512 * 1024),
                max_request_size=s.max_request_bytes,
                request_timeout_ms=int(s.send_timeout_s * 1000),
                retry_backoff_ms=100,
                metadata_max_age_ms=60_000,
            )
            try:
                async with asyncio.timeout(s.send_timeout_s):
                    await producer.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                await _stop_quietly(producer, 1.0)
                raise SendFailure(f"cannot connect: {type(exc).__name__}", ()) from None
            except BaseException:  # cancelled (the client is closing): release it all the same
                await _stop_quietly(producer, 1.0)
                raise
            self._producer = producer
            return producer

    async def send(self, events: Sequence[Encoded]) -> None:
        if not events:
            return
        try:
            producer = await self._ready()
        except SendFailure as exc:
            raise SendFailure(exc.reason, events) from None
        s = self._settings
        try:
            async with asyncio.timeout(s.send_timeout_s):
                partitions = await producer.partitions_for(s.topic)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._reset()
            raise SendFailure(f"no metadata for the topic: {type(exc).__name__}", events) from None
        futures: list[asyncio.Future[object] | BaseException] = []
        if self._packed:
            groups: dict[int, EncodedBatch] = {}
            for start in range(0, len(events), _GROUP_SLICE):
                if start:
                    await asyncio.sleep(0)  # a pass of the loop: see _GROUP_SLICE
                group_by_partition(events[start : start + _GROUP_SLICE], len(partitions), groups)
            records = pack_groups(
                groups, max_bytes=s.record_max_bytes, max_events=s.record_max_events
            )
        else:
            records = build_records(
                events,
                len(partitions),
                max_bytes=s.record_max_bytes,
                max_events=s.record_max_events,
                packed=False,
            )
        for record in records:
            try:
                futures.append(
                    await producer.send(s.topic, value=record.value, partition=record.partition)
                )
            except (KafkaError, OSError, AssertionError) as exc:
                futures.append(exc)
        outcomes = await asyncio.gather(*(_settled(f) for f in futures), return_exceptions=True)
        retry: list[Encoded] = []
        rejected: list[Encoded] = []
        reasons: set[str] = set()
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                reasons.add(type(outcome).__name__)
                # ProducerClosed: another send of this client failed meanwhile and reset the
                # shared producer; these records were never refused by the broker (counting
                # them as rejected for good lost 80 events in a broker restart).
                # KafkaTimeoutError (not "retriable" in aiokafka): the producer could not
                # even queue the record within the timeout, a broker that is away.
                retriable = getattr(outcome, "retriable", True) or isinstance(
                    outcome, TimeoutError | OSError | ProducerClosed | KafkaTimeoutError
                )
                (retry if retriable else rejected).extend(record.events)
        if retry or rejected:
            if retry:
                await self._reset()  # a fresh producer (new producer id) after a failure
            raise SendFailure(", ".join(sorted(reasons)), retry, rejected)

    async def _reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer, 1.0)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer, self._settings.send_timeout_s)


async def _settled(future: asyncio.Future[object] | BaseException) -> object:
    if isinstance(future, BaseException):
        raise future
    return await future


async def _stop_quietly(producer: AIOKafkaProducer, timeout_s: float) -> None:
    """Stop a producer, logging (at DEBUG) what went wrong. A cancellation of the task
    that stops it (the client closing) is re-raised, never swallowed: swallowed, it turned
    the close of a client with the broker down into a ``SendFailure`` nobody awaited."""
    try:
        async with asyncio.timeout(timeout_s):
            await producer.stop()
    except (KafkaError, OSError, TimeoutError, asyncio.CancelledError) as exc:
        task = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
            raise
        log.debug("the Kafka producer did not stop cleanly", exc_info=True)


@dataclass
class MemoryTransport:
    """The in-memory twin: records kept in a list, per partition as Kafka would place them.

    ``down`` makes every send fail (retriable); ``stalled`` makes sends wait until
    :meth:`release` (from any thread). Both simulate a broker that is away.
    ``refuse_over_bytes`` simulates the broker's ``message.max.bytes``: a record whose value
    is larger is refused for good (the others of the send are kept), as Kafka refuses it
    with a ``RecordTooLargeError``.
    """

    partitions: int = 12
    record_max_bytes: int = 256 * 1024
    record_max_events: int = 500
    packed: bool = True
    records: list[Record] = field(default_factory=list)
    down: bool = False
    refuse_over_bytes: int | None = None
    sends: int = 0
    _gate: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._gate.set()

    def stall(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def send(self, events: Sequence[Encoded]) -> None:
        self.sends += 1
        while not self._gate.is_set():  # noqa: ASYNC110 - released from another thread
            await asyncio.sleep(0.002)
        if self.down:
            raise SendFailure("broker down (simulated)", events)
        records = build_records(
            events,
            self.partitions,
            max_bytes=self.record_max_bytes,
            max_events=self.record_max_events,
            packed=self.packed,
        )
        limit = self.refuse_over_bytes
        kept: list[Record] = []
        refused: list[Record] = []
        for record in records:
            (refused if limit is not None and len(record.value) > limit else kept).append(record)
        with self._lock:
            self.records.extend(kept)
        if refused:
            rejected = [event for record in refused for event in record.events]
            raise SendFailure("RecordTooLargeError (simulated)", (), rejected)

    async def close(self) -> None:
        self._gate.set()

    def event_ids(self) -> list[str]:
        """``event_id`` of every delivered event, in delivery order."""
        with self._lock:
            records = list(self.records)
        return [orjson.loads(data)["event_id"] for record in records for _, data in record.events]

    def bodies(self) -> list[dict[str, object]]:
        """Every delivered event, decoded."""
        with self._lock:
            records = list(self.records)
        return [orjson.loads(data) for record in records for _, data in record.events]
