"""The publisher: 2xx only after Kafka's ack or the spool's fsync; coalescing; draining."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.errors import PayloadTooLarge, Unavailable
from gateway.publisher import Publisher
from producers.sdk import MemoryTransport, SendFailure, Spool
from producers.sdk.spool import MAGIC


def _events(n: int, tag: str = "e") -> list[tuple[bytes, bytes]]:
    return [(f"p/{tag}{i}".encode(), f'{{"event_id":"{tag}{i}"}}'.encode()) for i in range(n)]


def _spool(root: Path, max_bytes: int = 1 << 20) -> Spool:
    return Spool(root, max_bytes=max_bytes, segment_bytes=1 << 16, fsync="batch")


async def _publisher(transport: MemoryTransport, spool: Spool | None) -> Publisher:
    publisher = Publisher(transport, spool, linger_s=0.002, send_timeout_s=0.5, backoff_max_s=0.2)
    publisher.start()
    return publisher


async def test_concurrent_requests_are_sent_together_and_answered_after_the_ack():
    transport = MemoryTransport(partitions=4)
    publisher = await _publisher(transport, None)
    try:
        answers = await asyncio.gather(
            *(publisher.publish(_events(3, f"r{i}-")) for i in range(50))
        )
    finally:
        await publisher.close()
    assert set(answers) == {"sent"}
    assert len(transport.event_ids()) == 150
    assert transport.sends < 50  # coalesced: fewer sends than requests


_BIG = (b"p/big", b'{"event_id":"big","pad":"' + b"x" * 5000 + b'"}')  # over the refusal


async def _publish_around_a_refused_record(transport: MemoryTransport) -> list[object]:
    """Three concurrent requests (one send, one partition), the middle one's record refused."""
    publisher = await _publisher(transport, None)
    try:
        return await asyncio.gather(
            publisher.publish(_events(3, "a")),
            publisher.publish([_BIG]),
            publisher.publish(_events(3, "b")),
            return_exceptions=True,
        )
    finally:
        await publisher.close()


async def test_the_request_whose_record_kafka_refuses_fails_and_the_others_are_sent():
    # The transport hands back the refused events from its records (two lists per batch,
    # not the pairs it was given): the publisher still knows whose they were.
    transport = MemoryTransport(partitions=1, record_max_bytes=1024, refuse_over_bytes=4096)
    answers = await _publish_around_a_refused_record(transport)
    assert answers[0] == answers[2] == "sent"
    assert isinstance(answers[1], PayloadTooLarge)
    assert sorted(transport.event_ids()) == ["a0", "a1", "a2", "b0", "b1", "b2"]


class _CopyingTransport(MemoryTransport):
    """Hands back copies of the events it refuses: against the Transport protocol."""

    async def send(self, events: Sequence[tuple[bytes, bytes]]) -> None:
        try:
            await super().send(events)
        except SendFailure as failure:
            copies = [(bytes(key), bytearray(data)) for key, data in failure.rejected]
            raise SendFailure(failure.reason, failure.retry, copies) from None  # type: ignore[arg-type]


async def test_failed_events_the_publisher_cannot_place_fail_every_request_not_2xx():
    transport = _CopyingTransport(partitions=1, record_max_bytes=1024, refuse_over_bytes=4096)
    answers = await _publish_around_a_refused_record(transport)
    assert all(isinstance(answer, Unavailable) for answer in answers), answers


async def test_broker_down_spools_then_the_spool_drains(tmp_path: Path):
    transport = MemoryTransport(partitions=4, down=True)
    spool = _spool(tmp_path)
    publisher = await _publisher(transport, spool)
    try:
        first = await publisher.publish(_events(5, "a"))
        second = await publisher.publish(_events(5, "b"))  # the backoff: straight to the spool
        assert (first, second) == ("spooled", "spooled")
        assert transport.event_ids() == [] and spool.has_unsent()
        transport.down = False
        async with asyncio.timeout(5):
            while len(transport.event_ids()) < 10:  # noqa: ASYNC110 - the twin has no event
                await asyncio.sleep(0.02)
        assert sorted(transport.event_ids()) == [f"a{i}" for i in range(5)] + [
            f"b{i}" for i in range(5)
        ]
        assert publisher.stats.resent == 10
    finally:
        await publisher.close()


async def test_events_spooled_by_a_dead_process_are_sent_by_the_next(tmp_path: Path):
    spool = _spool(tmp_path)
    spool.append(_events(4, "old"))
    spool.close()  # the process died after spooling (the answer was already 2xx)
    transport = MemoryTransport(partitions=4)
    publisher = await _publisher(transport, _spool(tmp_path))
    try:
        async with asyncio.timeout(5):
            while len(transport.event_ids()) < 4:  # noqa: ASYNC110 - the twin has no event
                await asyncio.sleep(0.02)
    finally:
        await publisher.close()
    assert sorted(transport.event_ids()) == [f"old{i}" for i in range(4)]


async def test_without_room_anywhere_the_request_fails_with_503(tmp_path: Path):
    transport = MemoryTransport(partitions=4, down=True)
    publisher = await _publisher(transport, None)
    try:
        with pytest.raises(Unavailable):
            await publisher.publish(_events(2))
    finally:
        await publisher.close()
    full = _spool(tmp_path / "full", max_bytes=64)
    publisher = await _publisher(MemoryTransport(down=True), full)
    try:
        with pytest.raises(Unavailable):
            await publisher.publish(_events(20))
    finally:
        await publisher.close()


async def test_events_written_before_a_failed_fsync_are_answered_as_spooled_and_sent_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The frames on disk before the failed fsync are sent by the drain: answering 503 for
    them would make the client send them a second time."""
    real_fsync = os.fsync
    failed: list[int] = []

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        if not failed and stat.S_ISREG(info.st_mode) and info.st_size > len(MAGIC):
            failed.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    transport = MemoryTransport(partitions=4, down=True)
    publisher = await _publisher(transport, _spool(tmp_path))
    try:
        assert await publisher.publish(_events(5, "a")) == "spooled"
        assert failed  # the write reached the file whole; its fsync failed
        transport.down = False
        async with asyncio.timeout(5):
            while len(transport.event_ids()) < 5:  # noqa: ASYNC110 - the twin has no event
                await asyncio.sleep(0.02)
    finally:
        await publisher.close()
    assert sorted(transport.event_ids()) == [f"a{i}" for i in range(5)]
    assert publisher.stats.spooled == 5


async def test_a_stalled_broker_times_out_into_the_spool(tmp_path: Path):
    transport = MemoryTransport(partitions=4)
    transport.stall()
    publisher = Publisher(transport, _spool(tmp_path), linger_s=0, send_timeout_s=0.05)
    publisher.start()
    try:
        assert await publisher.publish(_events(2)) == "spooled"
    finally:
        transport.release()
        await publisher.close()


async def _until(predicate: object, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)


async def test_an_event_kafka_refuses_for_good_leaves_the_spool_counted_and_the_drain_goes_on(
    tmp_path: Path,
):
    # Spooled (the requests were answered 2xx) by a process that died; one event is larger
    # than the broker takes. It must be counted and leave the spool, not be retried forever
    # while the events after it wait; the events around it are sent once each.
    spool = _spool(tmp_path)
    big = (b"p/big", b'{"event_id":"big","pad":"' + b"x" * 5000 + b'"}')
    spool.append([*_events(3, "a"), big, *_events(3, "b")])
    spool.close()
    transport = MemoryTransport(partitions=4, record_max_bytes=1024, refuse_over_bytes=4096)
    reopened = _spool(tmp_path)
    publisher = await _publisher(transport, reopened)
    try:
        await _until(lambda: not reopened.has_unsent())  # not retried forever
        assert publisher.stats.rejected_from_spool == 1
        assert len(transport.event_ids()) == 6
        # The drain goes on: what is spooled later is sent too.
        transport.down = True
        assert await publisher.publish(_events(2, "c")) == "spooled"
        transport.down = False
        await _until(lambda: len(transport.event_ids()) == 8)
        await _until(lambda: not reopened.has_unsent())
    finally:
        await publisher.close()
    ids = transport.event_ids()
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted([f"a{i}" for i in range(3)] + [f"b{i}" for i in range(3)]
                                 + ["c0", "c1"])  # fmt: skip
    assert publisher.stats.rejected_from_spool == 1 and publisher.stats.resent == 8


async def test_a_corrupt_spool_region_is_skipped_and_counted(tmp_path: Path):
    spool = _spool(tmp_path)
    spool.append(_events(20, "a"))
    spool.close()
    (segment,) = sorted(spool.slot.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    frame = (len(data) - len(MAGIC)) // 20
    data[len(MAGIC) + 5 * frame + 12] ^= 0xFF  # a byte inside the 6th frame's payload
    segment.write_bytes(bytes(data))
    transport = MemoryTransport(partitions=4)
    publisher = await _publisher(transport, _spool(tmp_path))
    try:
        await _until(lambda: len(transport.event_ids()) == 19)
    finally:
        await publisher.close()
    assert sorted(transport.event_ids()) == sorted(f"a{i}" for i in range(20) if i != 5)
    assert publisher.stats.spool_corrupt == 1
