"""The disk spool: order, deletion only after ack, torn writes, bounds, slots, fsync."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from producers.sdk.spool import MAGIC, Spool, SpoolChunk, SpoolError, encode_frames

Event = tuple[bytes, bytes]


def events(n: int, start: int = 0, size: int = 40) -> list[Event]:
    return [
        (b"key-%d" % i, (b'{"n":%d,"pad":"' % i) + b"x" * size + b'"}')
        for i in range(start, start + n)
    ]


def open_spool(root: Path, **kw: object) -> Spool:
    options: dict[str, object] = {"max_bytes": 10**7, "segment_bytes": 4096, "fsync": "batch"}
    options.update(kw)
    return Spool(root, **options)  # type: ignore[arg-type]


def read_all(spool: Spool, *, ack: bool = True, batch: int = 7) -> tuple[list[Event], int]:
    out: list[Event] = []
    corrupt = 0
    while True:
        chunk = spool.read(batch, 10**6)
        corrupt += chunk.corrupt_regions
        if not chunk.events:
            spool.ack(chunk)
            return out, corrupt
        out.extend(chunk.events)
        if ack:
            spool.ack(chunk)


def segment_files(spool: Spool) -> list[Path]:
    return sorted(spool.slot.glob("*.seg"))


def test_round_trip_in_order_across_segments_and_deleted_after_ack(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    written = events(300)
    for i in range(0, 300, 20):
        assert spool.append(written[i : i + 20]) == 20
    assert len(segment_files(spool)) > 1
    assert spool.has_unsent()
    got, corrupt = read_all(spool)
    assert got == written and corrupt == 0
    assert not spool.has_unsent()
    assert segment_files(spool) == [] and spool.nbytes == 0
    spool.close()


def test_unacknowledged_events_survive_a_restart(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append(events(50))
    chunk = spool.read(30, 10**6)
    assert len(chunk.events) == 30  # read but never acknowledged
    spool.close()
    again = open_spool(tmp_path)
    assert again.recovered_segments == 1
    got, _ = read_all(again)
    assert got == events(50)
    again.close()


def test_partial_ack_keeps_the_segment(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=10**6)
    spool.append(events(10))
    first = spool.read(4, 10**6)
    spool.ack(first)
    assert len(segment_files(spool)) == 1  # 6 events of it are not acknowledged yet
    rest = spool.read(100, 10**6)
    assert rest.events == events(6, start=4)
    spool.ack(rest)
    assert segment_files(spool) == []
    spool.close()


def test_torn_write_at_the_end_is_detected_and_skipped(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=10**6)
    spool.append(events(10))
    spool.close()
    (segment,) = segment_files(spool)
    size = segment.stat().st_size
    with segment.open("r+b") as f:
        f.truncate(size - 15)  # the last frame was cut by a crash
    again = open_spool(tmp_path)
    got, corrupt = read_all(again)
    assert got == events(9)
    assert corrupt == 1
    assert segment_files(again) == []
    again.close()


def test_torn_frame_header_is_skipped(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=10**6)
    spool.append(events(3))
    spool.close()
    (segment,) = segment_files(spool)
    with segment.open("ab") as f:
        f.write(b"\x05\x00")  # two bytes of a header, then the crash
    again = open_spool(tmp_path)
    got, corrupt = read_all(again)
    assert got == events(3) and corrupt == 1
    again.close()


def test_damaged_frame_in_the_middle_is_skipped_and_reading_resumes(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=10**6)
    spool.append(events(20))
    spool.close()
    (segment,) = segment_files(spool)
    data = bytearray(segment.read_bytes())
    frame = (len(data) - len(MAGIC)) // 20
    data[len(MAGIC) + 5 * frame + 20] ^= 0xFF  # flip a byte inside the 6th frame's payload
    segment.write_bytes(bytes(data))
    again = open_spool(tmp_path)
    got, corrupt = read_all(again)
    assert got == events(5) + events(14, start=6)
    assert corrupt == 1
    again.close()


def test_garbage_length_is_resynchronised(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=10**6)
    spool.append(events(5))
    spool.close()
    (segment,) = segment_files(spool)
    data = bytearray(segment.read_bytes())
    data[len(MAGIC) : len(MAGIC) + 4] = b"\xff\xff\xff\x7f"  # first frame claims 2 GiB
    segment.write_bytes(bytes(data))
    again = open_spool(tmp_path)
    got, corrupt = read_all(again)
    assert got == events(4, start=1) and corrupt == 1
    again.close()


@pytest.mark.parametrize(
    ("content", "corrupt_regions"),
    # Empty or the start of the header: cut while it was created, it held no event.
    [(b"", 0), (b"LFSP", 0), (b"NOTASPOOLFILE-----", 1)],
)
def test_segment_without_a_valid_header_is_skipped(
    tmp_path: Path, content: bytes, corrupt_regions: int
) -> None:
    spool = open_spool(tmp_path)
    spool.close()
    (spool.slot / "0000000000000001.seg").write_bytes(content)
    again = open_spool(tmp_path)
    again.append(events(2))
    got, corrupt = read_all(again)
    assert got == events(2)
    assert corrupt == corrupt_regions
    assert segment_files(again) == []
    again.close()


def test_size_bound_accepts_a_prefix(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=1000, segment_bytes=10**6)
    accepted = spool.append(events(100))
    assert 0 < accepted < 100
    assert spool.nbytes <= 1000
    assert spool.append(events(1)) == 0
    got, _ = read_all(spool)
    assert got == events(accepted)
    assert spool.append(events(1)) == 1  # room again once acknowledged
    spool.close()


def test_frames_encoded_by_the_caller_are_written_as_the_spool_would_encode_them(
    tmp_path: Path,
) -> None:
    # The SDK's worker encodes a batch's frames a slice at a time, then writes them at once.
    given = events(50)
    spool = open_spool(tmp_path / "a")
    assert spool.append(given, frames=encode_frames(given[:20]) + encode_frames(given[20:])) == 50
    assert read_all(spool)[0] == given
    with pytest.raises(ValueError, match="one frame per event"):
        spool.append(given, frames=encode_frames(given[:49]))
    spool.close()


@pytest.mark.parametrize(("policy", "expected"), [("never", 0), ("batch", 2), ("always", 7)])
def test_fsync_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, expected: int
) -> None:
    spool = open_spool(tmp_path, fsync=policy, segment_bytes=10**6)
    spool.append(events(1))  # creates the segment (its creation is synced unless "never")
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    spool.append(events(3))
    spool.append(events(4))
    assert len(calls) == expected
    spool.close()


def test_a_failed_write_keeps_the_frames_written_whole_and_cuts_the_torn_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(tmp_path, segment_bytes=10**6, fsync="never")
    spool.append(events(2))
    batch = events(5, start=2)
    frames = encode_frames(batch)
    cut = len(frames[0]) + len(frames[1]) + len(frames[2]) // 2
    real_write = os.write
    writes: list[int] = []

    def write(fd: int, data: bytes) -> int:  # 2.5 frames reach the file, then the disk is full
        if writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        writes.append(fd)
        return real_write(fd, bytes(data)[:cut])

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(SpoolError) as info:
        spool.append(batch)
    monkeypatch.undo()
    assert (info.value.tried, info.value.written) == (5, 2)
    (segment,) = segment_files(spool)
    assert segment.stat().st_size == len(MAGIC) + sum(map(len, encode_frames(events(4))))
    assert spool.append(events(3, start=7)) == 3  # to a new segment
    got, corrupt = read_all(spool)
    assert got == events(4) + events(3, start=7)
    assert corrupt == 0  # the torn frame was cut, not left for the reader to skip
    spool.close()


def test_a_failed_fsync_keeps_the_whole_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(tmp_path, segment_bytes=10**6, fsync="batch")
    spool.append(events(1))

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(SpoolError) as info:
        spool.append(events(4, start=1))
    monkeypatch.undo()
    assert (info.value.tried, info.value.written) == (4, 4)
    got, corrupt = read_all(spool)
    assert got == events(5) and corrupt == 0
    spool.close()


def test_a_segment_that_cannot_be_created_leaves_no_file_and_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(tmp_path, fsync="batch")

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(SpoolError) as info:
            spool.append(events(2))
        assert (info.value.tried, info.value.written) == (2, 0)
    assert len(os.listdir("/proc/self/fd")) == before
    monkeypatch.undo()
    assert segment_files(spool) == []
    assert spool.append(events(2)) == 2
    got, _ = read_all(spool)
    assert got == events(2)
    spool.close()


def test_two_spools_on_one_root_take_different_slots(tmp_path: Path) -> None:
    a = open_spool(tmp_path)
    b = open_spool(tmp_path)
    assert a.slot != b.slot
    a.close()
    b.close()


def test_a_dead_processs_slot_is_adopted_and_sent_first(tmp_path: Path) -> None:
    a = open_spool(tmp_path)
    b = open_spool(tmp_path)  # slot-1, the "other process"
    b.append(events(5, start=100))
    a.close()
    b.close()  # the other process is gone; slot-1 still holds its events
    c = open_spool(tmp_path)  # takes slot-0 and adopts slot-1
    c.append(events(2))
    got, _ = read_all(c)
    assert got == events(5, start=100) + events(2)
    c.close()


def test_sigkill_in_the_middle_of_writing_loses_nothing_written_whole(tmp_path: Path) -> None:
    """A writer is killed with SIGKILL; a new spool reads every complete frame."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from producers.sdk.spool import Spool
        spool = Spool(Path({str(tmp_path)!r}), max_bytes=10**8, segment_bytes=64 * 1024,
                      fsync="never")
        i = 0
        while True:
            spool.append([(b"k", b'{{"n":%d}}' % n) for n in range(i, i + 50)])
            i += 50
            if i == 5000:
                print("ready", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    spool = open_spool(tmp_path)
    got, corrupt = read_all(spool, batch=1000)
    numbers = [int(data[5:-1]) for _, data in got]
    assert len(numbers) >= 5000
    assert numbers == list(range(len(numbers)))  # in order, no gap
    assert corrupt <= 1
    spool.close()


def test_empty_chunk_ack_is_harmless(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.ack(SpoolChunk(events=[]))
    assert not spool.has_unsent()
    spool.close()
