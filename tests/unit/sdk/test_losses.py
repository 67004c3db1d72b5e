"""What is lost is bounded and counted (issue 19): flush() and close() say when events were
lost, a failed spool write counts only what it really lost, and corrupt spool regions are
counted as regions, apart from the events dropped."""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

import pytest

from producers.sdk import MemoryTransport, Spool
from producers.sdk.spool import MAGIC
from producers.sdk.stats import DropReason

from .conftest import MakeClient, wait_for


def test_flush_is_false_after_a_drop_and_true_again_once_nothing_more_is_lost(
    make_client: MakeClient,
) -> None:
    transport = MemoryTransport()
    # A worker that wakes rarely: the queue (10 events) overflows, policy drop.
    client = make_client(
        transport,
        overflow="drop",
        max_queue_events=10,
        flush_interval_ms=60_000,
        batch_max_events=100_000,
    )
    for i in range(50):
        client.log(output=str(i))
    assert client.flush(5) is False  # all it kept is delivered, but 40 were dropped
    stats = client.stats()
    assert stats.sent == 10 and stats.dropped == {DropReason.QUEUE_FULL: 40}
    for i in range(5):
        client.log(output=f"later {i}")
    assert client.flush(5) is True  # nothing lost since the previous flush
    assert client.flush(5) is True


def test_close_is_false_when_an_event_was_refused_since_the_last_flush(
    make_client: MakeClient,
) -> None:
    transport = MemoryTransport()
    client = make_client(transport)
    client.log(output="fine")
    assert client.flush(5) is True
    client.log(prompt_tokens=-1)  # invalid: counted, never sent
    client.log(output="fine too")
    assert client.close(5) is False
    assert client.stats().dropped == {DropReason.INVALID: 1}
    assert len(transport.event_ids()) == 2


def test_an_emit_that_fails_unexpectedly_is_counted(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a contract error (those are counted as invalid naming the field): a failure the
    # SDK did not foresee. The call still never raises; the event is lost, so it is counted.
    client = make_client(MemoryTransport())
    client.log(output="fine")

    def broken(*_: object) -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client._encoder, "item", broken)
    client.log(output="lost")
    monkeypatch.undo()
    assert client.flush(5) is False
    assert client.stats().dropped == {DropReason.INVALID: 1}


def test_events_an_earlier_process_lost_do_not_make_flush_false(
    make_client: MakeClient, tmp_path: Path
) -> None:
    # lost_at_exit counts what another process lost before this client existed: reported
    # by stats() and a warning, not by this client's flush().
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, segment_bytes=1 << 16, fsync="never")
    spool.mark_unsent(7)
    spool.forget_after_fork()  # its owner "died": descriptors closed, nothing written
    client = make_client(MemoryTransport())
    assert client.stats().dropped == {DropReason.LOST_AT_EXIT: 7}
    client.log(output="x")
    assert client.flush(5) is True


def test_events_written_whole_before_a_failed_fsync_are_spooled_and_sent_not_dropped(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    failed: list[int] = []

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        if not failed and stat.S_ISREG(info.st_mode) and info.st_size > len(MAGIC):
            failed.append(fd)  # the first fsync after frames were written: an I/O error
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    transport = MemoryTransport()
    transport.down = True
    client = make_client(transport, spool_fsync="batch")
    for i in range(100):
        client.log(output=str(i))
    wait_for(lambda: client.stats().spooled + client.stats().dropped_total >= 100)
    assert failed
    transport.down = False
    assert client.flush(10) is True
    stats = client.stats()
    assert stats.dropped == {}  # the events the failed fsync followed were not lost
    assert stats.spooled == stats.sent == stats.resent_from_spool == 100
    ids = transport.event_ids()
    assert len(ids) == len(set(ids)) == 100


def _frame_offsets(data: bytes) -> list[int]:
    offsets, pos = [], len(MAGIC)
    while pos < len(data):
        offsets.append(pos)
        (length,) = struct.unpack_from("<I", data, pos)
        pos += 8 + length
    return offsets


def test_a_corrupt_spool_region_is_counted_as_a_region_not_as_dropped_events(
    make_client: MakeClient, tmp_path: Path
) -> None:
    down = MemoryTransport()
    down.down = True
    first = make_client(down)
    for i in range(20):
        first.log(output=str(i))
    assert first.close(timeout=0.5) is False
    assert first.stats().spooled == 20
    (segment,) = sorted((tmp_path / "spool").rglob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[_frame_offsets(bytes(data))[5] + 20] ^= 0xFF  # damage the 6th frame's payload
    segment.write_bytes(bytes(data))
    up = MemoryTransport()
    second = make_client(up)
    assert second.flush(10) is False  # the spool it took over lost an event
    stats = second.stats()
    assert stats.spool_corrupt == 1  # one region; how many events it held is not known
    assert stats.dropped == {} and stats.dropped_total == 0
    assert stats.sent == stats.resent_from_spool == len(up.event_ids()) == 19
    assert second.flush(5) is True
