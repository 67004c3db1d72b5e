"""``logflume export`` / ``logflume import``: the raw history as a portable archive.

Format: one zstd stream of JSON lines (``zstd -dc FILE`` reads it)::

    {"format": "logflume-archive", "version": 1, "topic": ..., "since": ..., "until": ...}
    <one wire event per line, the bytes it had on the raw topic>
    ...
    {"format": "logflume-archive", "end": true, "events": N}

The trailer makes a truncated archive (an interrupted export, a partial copy) an error
instead of a silently shorter history; an export writes a temporary file and renames it
only once complete.

An export writes no payload field of a ``save=false`` log and no event of a deleted
entity, whatever the raw topic holds (:mod:`logflume.history.privacy`; it reads the window
twice for that).

Import publishes every event with the bytes it was archived with, so its ``event_id`` and
``ts`` are unchanged: stage 1 drops an event id it has already merged, and the re-emitted
entity has the same version, which the sink's guard ignores. Importing twice therefore
changes nothing downstream. Events the contract rejects are not published again: live,
they were dead-lettered under their original offsets; published again they would only
add dead letters under new ones. Records get the newest event time as their Kafka
timestamp, so ``replay --from/--until`` select imported history by event time.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import zstandard
from aiokafka import AIOKafkaConsumer, TopicPartition

from kernel.clients import kafka_consumer, kafka_producer
from kernel.settings import Settings
from processors.codec import RECORD_OVERHEAD_BYTES
from producers.contract import (
    ContractError,
    pack_record,
    partition_for,
    routing_key,
    validate_event,
)

from .privacy import PrivacyFilter
from .window import Window, resolve_window

__all__ = [
    "FORMAT",
    "ArchiveError",
    "ArchiveWriter",
    "ExportReport",
    "ImportReport",
    "export_archive",
    "import_archive",
    "read_archive",
    "write_archive",
]

FORMAT = "logflume-archive"
VERSION = 1
_EVENTS_PER_RECORD = 100  # what the SDK packs at most; stage 1's cost is per record
_INFLIGHT = 2000  # sends awaited together

Progress = Callable[[int, int, int], None]  # records done, events done, lag


class ArchiveError(Exception):
    """The archive is missing, unreadable, not an archive, or incomplete."""


@dataclass(slots=True)
class ExportReport:
    records: int = 0
    events: int = 0
    unreadable: int = 0  # records that are not JSON (dead letters live): not archivable
    deleted: int = 0  # events of entities deleted since: not exported
    bytes: int = 0


@dataclass(slots=True)
class ImportReport:
    events: int = 0
    records: int = 0
    invalid: int = 0


class ArchiveWriter:
    """Writes header, event lines and trailer as one zstd stream (streaming: an export's
    memory stays at one fetch, whatever the history's size)."""

    def __init__(self, out: BinaryIO, header: dict[str, Any], *, level: int = 3) -> None:
        self._writer = zstandard.ZstdCompressor(level=level).stream_writer(out, closefd=False)
        self._writer.write(orjson.dumps({"format": FORMAT, "version": VERSION, **header}) + b"\n")
        self.count = 0

    def write(self, line: bytes) -> None:
        self._writer.write(line + b"\n")
        self.count += 1

    def close(self) -> None:
        trailer = {"format": FORMAT, "end": True, "events": self.count}
        self._writer.write(orjson.dumps(trailer) + b"\n")
        self._writer.close()


def write_archive(out: BinaryIO, header: dict[str, Any], lines: Iterable[bytes]) -> int:
    """Write a whole archive; the number of event lines."""
    writer = ArchiveWriter(out, header)
    for line in lines:
        writer.write(line)
    writer.close()
    return writer.count


def read_archive(path: Path) -> Iterator[bytes]:
    """The event lines of an archive, checked: header, trailer and count."""
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such file") from None
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        lines = io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
        try:
            yield from _checked_lines(path, lines)
        except zstandard.ZstdError as exc:
            raise ArchiveError(f"{path}: not a zstd archive or corrupt ({exc})") from None


def _checked_lines(path: Path, lines: io.BufferedReader) -> Iterator[bytes]:
    header = _json_line(path, lines.readline(), 1)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArchiveError(f"{path}: not a logflume archive (no header line)")
    if header.get("version") != VERSION:
        raise ArchiveError(f"{path}: archive version {header.get('version')!r} is not supported")
    count, number = 0, 1
    for line in lines:
        number += 1
        body = line.rstrip(b"\n")
        if body.startswith(b'{"format":'):
            trailer = _json_line(path, body, number)
            if trailer.get("end") is not True or trailer.get("events") != count:
                raise ArchiveError(f"{path}: line {number}: trailer does not match {count} events")
            if lines.read(1):
                raise ArchiveError(f"{path}: data after the trailer at line {number}")
            return
        if not line.endswith(b"\n"):
            break  # a cut-off last line: reported as truncated below
        count += 1
        yield body
    raise ArchiveError(f"{path}: truncated after {count} events (no trailer)")


def _json_line(path: Path, line: bytes, number: int) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ArchiveError(f"{path}: line {number} is not JSON") from None


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return kafka_consumer(
        settings,
        group_id=None,  # like replay: no group, nothing committed
        enable_auto_commit=False,
        client_id="logflume-export",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=max(settings.max_record_bytes, 8 * 1024 * 1024),
    )


async def export_archive(
    settings: Settings,
    path: Path,
    *,
    since: datetime | None,
    until: datetime | None,
    on_window: Callable[[Window], None] | None = None,
    on_progress: Progress | None = None,
) -> ExportReport:
    """Write the raw events of ``[since, until)`` to ``path``."""
    report = ExportReport()
    consumer = _consumer(settings)
    await consumer.start()
    tmp = path.with_name(f".{path.name}.partial")
    try:
        window = await resolve_window(
            consumer, settings.bootstrap_servers, settings.topics.events, since, until
        )
        if on_window is not None:
            on_window(window)
        privacy = PrivacyFilter()  # first pass: unsaved logs, deleted entities
        async for values in _read_window(consumer, window):
            for value in values:
                for item in _record_items(value) or ():
                    privacy.note(item)
        header = {
            "topic": window.topic,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "exported_at": datetime.now(UTC).isoformat(),
        }
        with tmp.open("wb") as out:
            writer = ArchiveWriter(out, header)
            positions = dict(window.start)
            async for values in _read_window(consumer, window, positions):
                for value in values:
                    _export_record(value, writer, report, privacy)
                if on_progress is not None:
                    on_progress(report.records, report.events, window.remaining(positions))
            writer.close()
            out.flush()
            os.fsync(out.fileno())
            report.bytes = out.tell()
        tmp.replace(path)
    finally:
        await consumer.stop()
        tmp.unlink(missing_ok=True)
    return report


async def _read_window(
    consumer: AIOKafkaConsumer, window: Window, positions: dict[int, int] | None = None
) -> AsyncIterator[list[bytes]]:
    """The raw records of the window (their values, fetch by fetch), read from its start;
    ``positions`` follows each partition's consumer position."""
    pending = {p for p in window.start if window.start[p] < window.end[p]}
    tps = [TopicPartition(window.topic, p) for p in pending]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, window.start[tp.partition])
    while pending:
        fetched = await consumer.getmany(timeout_ms=500, max_records=2000)
        values: list[bytes] = []
        for tp, messages in fetched.items():
            end = window.end[tp.partition]
            values += [m.value for m in messages if m.offset < end and m.value is not None]
            position = await consumer.position(tp)
            if positions is not None:
                positions[tp.partition] = position
            if position >= end:
                pending.discard(tp.partition)
                consumer.pause(tp)
        yield values


def _record_items(value: bytes) -> list[Any] | None:
    """The events of a raw record (a JSON array of events, or one); None if not JSON."""
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, list) else [decoded]


def _export_record(
    value: bytes, writer: ArchiveWriter, report: ExportReport, privacy: PrivacyFilter
) -> None:
    """One raw record's events as lines: those of unsaved logs without payload fields,
    none of a deleted entity."""
    report.records += 1
    items = _record_items(value)
    if items is None:
        report.unreadable += 1
        return
    for item in items:
        kept = privacy.screen(item)
        if kept is None:
            report.deleted += 1
            continue
        writer.write(orjson.dumps(kept))
        report.events += 1


async def import_archive(
    settings: Settings, path: Path, *, on_progress: Progress | None = None
) -> ImportReport:
    """Publish the archive's valid events to the raw topic, packed per partition."""
    report = ImportReport()
    lines = read_archive(path)
    first = next(lines, None)  # open and check the header before connecting
    producer = kafka_producer(
        settings,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        compression_type="lz4",
        max_batch_size=256 * 1024,
        max_request_size=settings.max_record_bytes + RECORD_OVERHEAD_BYTES,
    )
    await producer.start()
    topic = settings.topics.events
    budget = settings.max_record_bytes - RECORD_OVERHEAD_BYTES
    buffers: dict[int, tuple[list[bytes], int, int]] = {}  # partition -> events, bytes, ts
    futures: list[Any] = []

    async def send(partition: int) -> None:
        events, _, ts_ms = buffers.pop(partition)
        futures.append(
            await producer.send(topic, pack_record(events), partition=partition, timestamp_ms=ts_ms)
        )
        report.records += 1
        if len(futures) >= _INFLIGHT:
            await _drain(futures)
            if on_progress is not None:
                on_progress(report.records, report.events, 0)

    try:
        for line in _chain(first, lines):
            try:
                event = validate_event(orjson.loads(line))
            except (ContractError, orjson.JSONDecodeError):
                report.invalid += 1
                continue
            partition = partition_for(routing_key(event), settings.partitions)
            events, size, ts_ms = buffers.get(partition, ([], 2, 0))
            if events and (len(events) >= _EVENTS_PER_RECORD or size + len(line) + 1 > budget):
                await send(partition)
                events, size, ts_ms = [], 2, 0
            events.append(line)
            buffers[partition] = (events, size + len(line) + 1, max(ts_ms, _ms(event.ts)))
            report.events += 1
        for partition in list(buffers):
            await send(partition)
        await _drain(futures)
        if on_progress is not None:
            on_progress(report.records, report.events, 0)
    finally:
        await producer.stop()
    return report


def _chain(first: bytes | None, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first is not None:
        yield first
    yield from rest


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def _drain(futures: list[Any]) -> None:
    """Wait for every send in flight (raises the first failure)."""
    pending, futures[:] = list(futures), []
    await asyncio.gather(*pending)
