"""The local append-only disk spool: events that could not be sent yet, kept across crashes.

Layout: ``<root>/slot-<n>/<seq>.seg``. A client owns one slot, held with an exclusive
``flock`` on ``slot-<n>/.lock`` (the kernel releases it when the process dies, however it
dies), so processes sharing a root never write the same files. At open, the client also
adopts every unlocked slot that still holds segments: what a crashed process left is sent
by the next one, in order, before the client's own new events.

A segment starts with ``MAGIC``; then frames ``[u32 length][u32 crc32][payload]`` (little
endian), the payload being ``[u16 key length][routing key][event bytes]``. A torn write (a
crash in the middle of a frame) or a damaged frame fails the length or CRC check: the
reader skips to the next frame that checks out, counting the skipped region (regions, not
events: how many frames a damaged stretch held is not known). A write or fsync that fails
keeps the frames that reached the file whole (they are read and sent like the others), cuts
the torn one after them, and seals the segment (:class:`SpoolError` says how many were
kept). A new process never appends to an old segment. A segment is deleted only once every
frame in it was acknowledged by Kafka (:meth:`Spool.ack`); a re-sent event keeps its
``event_id``.

The first 8 bytes of a slot's ``.lock`` file count the events its owner had accepted but
held only in memory (queued or in flight) at its last cycle (:meth:`Spool.mark_unsent`).
A clean close sets it to 0; a process that dies without closing (``os._exit`` in a forked
worker, SIGKILL) leaves it, and the next process to open the slot counts those events as
lost (:attr:`Spool.lost_by_previous`): what a crash loses is bounded and counted.

After ``fork()`` the child drops its copy of the parent's spool with
:meth:`Spool.forget_after_fork` and opens a slot of its own: two processes never append to
one slot. The client does both at the child's first emit, not at the fork, so a child that
execs or exits without emitting opens no slot and reads (and resets) no other slot's count.

Thread safety: ``append`` may run on any thread; reading and acking belong to the worker.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import FsyncPolicy
from .encoding import Encoded

__all__ = ["MAGIC", "Spool", "SpoolChunk", "SpoolError", "encode_frames"]

log = logging.getLogger(__name__)

MAGIC = b"LFSPOOL1"
_FRAME = struct.Struct("<II")
_KEY_LEN = struct.Struct("<H")
_UNSENT = struct.Struct("<Q")
_MAX_FRAME = 64 * 1024 * 1024
_READ_AHEAD = 1024 * 1024


class SpoolError(OSError):
    """The spool could not be written. ``tried``: the events the failed write held (a prefix
    of those given; the rest did not fit under ``max_bytes``); ``written``: how many of them
    (a prefix) reached the file whole before the error. Those stay in the spool and are read
    and sent like any other (without the fsync's guarantee when the fsync is what failed);
    the others of ``tried`` are lost."""

    def __init__(self, errno: int, message: str, *, tried: int = 0, written: int = 0) -> None:
        super().__init__(errno, message)
        self.tried = tried
        self.written = written


@dataclass(slots=True, eq=False)
class _Segment:
    path: Path
    size: int  # bytes of complete frames (own) or of the file (recovered)
    sealed: bool


@dataclass(slots=True)
class SpoolChunk:
    """Events read in order; ``ack`` it once Kafka acknowledged all of them."""

    events: list[Encoded]
    segment: _Segment | None = None
    end: int = 0
    corrupt_regions: int = 0
    nbytes: int = 0


def encode_frames(events: Sequence[Encoded]) -> list[bytes]:
    """One frame per event: header (length, crc32) + key length + key + event."""
    frames = []
    for key, data in events:
        payload = _KEY_LEN.pack(len(key)) + key + data
        frames.append(_FRAME.pack(len(payload), zlib.crc32(payload)) + payload)
    return frames


class Spool:
    """Bounded (``max_bytes``) spool under ``root``; see the module docstring."""

    def __init__(
        self, root: Path, *, max_bytes: int, segment_bytes: int, fsync: FsyncPolicy
    ) -> None:
        self.root = root
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._lock_fds: list[int] = []
        root.mkdir(parents=True, exist_ok=True)
        self.slot = self._claim_slot()
        self._segments: deque[_Segment] = deque()
        for slot in self._orphan_slots():
            self._segments.extend(_sealed_segments(slot))
        self.lost_by_previous = sum(_take_unsent(fd) for fd in self._lock_fds)
        self._unsent = 0
        own = _sealed_segments(self.slot)
        self._segments.extend(own)
        self._next_seq = int(own[-1].path.stem) + 1 if own else 1
        self._active: _Segment | None = None
        self._fd: int | None = None
        self._bytes = sum(s.size for s in self._segments)
        self._read_off = 0  # read cursor in self._segments[0]
        self._acked_off = 0  # everything before it in self._segments[0] is acknowledged
        self._read_fd: tuple[Path, int] | None = None
        self._recovered = len(self._segments)
        self._closed = False

    # -- state -----------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes on disk (every segment not yet deleted)."""
        return self._bytes

    @property
    def recovered_segments(self) -> int:
        """Segments found at open (left by an earlier or crashed process)."""
        return self._recovered

    def has_unsent(self) -> bool:
        """True while some event in the spool is not acknowledged (read or not)."""
        segments = self._segments
        if not segments:
            return False
        head = segments[0]
        if len(segments) > 1 or head.sealed:
            return True  # a sealed segment is deleted as soon as it is fully acknowledged
        return max(self._acked_off, len(MAGIC)) < head.size

    def rewind(self) -> None:
        """Move the read cursor back to the first unacknowledged event (a new drain starts
        where the last acknowledged one ended)."""
        with self._lock:
            self._read_off = self._acked_off

    def mark_unsent(self, count: int) -> None:
        """Record how many accepted events only this process's memory holds (see the
        module docstring); a write only when the count changed."""
        if count == self._unsent or self._closed or not self._lock_fds:
            return
        self._unsent = count
        try:
            os.pwrite(self._lock_fds[0], _UNSENT.pack(count), 0)
        except OSError:
            pass  # only a count for the next process: never worth failing over

    # -- writing (any thread) --------------------------------------------------------------

    def append(self, events: Sequence[Encoded], *, frames: list[bytes] | None = None) -> int:
        """Write events in order; returns how many fit under ``max_bytes`` (a prefix).
        ``frames``: the events' :func:`encode_frames`, when the caller encoded them already.

        Raises :class:`SpoolError` when the disk refuses a write or an fsync; its ``written``
        events (a prefix) are in the spool all the same, see :class:`SpoolError`.
        """
        if frames is None:
            frames = encode_frames(events)
        elif len(frames) != len(events):
            raise ValueError("one frame per event")
        with self._lock:
            if self._closed:
                return 0
            room = self._max_bytes - self._bytes
            taken = 0
            size = 0
            for frame in frames:
                if size + len(frame) > room:
                    break
                size += len(frame)
                taken += 1
            if not taken:
                return 0
            try:
                segment, fd = self._writable(size)
            except OSError as exc:
                raise SpoolError(
                    exc.errno, f"creating a spool segment failed: {exc.strerror}", tried=taken
                ) from exc
            try:
                if self._fsync == "always":
                    for frame in frames[:taken]:
                        _write_all(fd, frame)
                        os.fsync(fd)
                else:
                    _write_all(fd, b"".join(frames[:taken]))
                    if self._fsync == "batch":
                        os.fsync(fd)
            except OSError as exc:
                written = self._seal_after_error(segment, fd, frames[:taken])
                raise SpoolError(
                    exc.errno,
                    f"writing the spool failed: {exc.strerror}",
                    tried=taken,
                    written=written,
                ) from exc
            segment.size += size
            self._bytes += size
        return taken

    def _writable(self, incoming: int) -> tuple[_Segment, int]:
        active, fd = self._active, self._fd
        if active is not None and fd is not None:
            if active.size + incoming <= self._segment_bytes or active.size <= len(MAGIC):
                return active, fd
            self._seal_active()
        path = self.slot / f"{self._next_seq:016d}.seg"
        self._next_seq += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            _write_all(fd, MAGIC)
            if self._fsync != "never":
                os.fsync(fd)
                _fsync_dir(self.slot)
        except OSError:
            # Holds no event: remove it, and keep no descriptor (a disk that keeps failing
            # would otherwise leak one per batch).
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        segment = _Segment(path, len(MAGIC), sealed=False)
        self._segments.append(segment)
        self._bytes += len(MAGIC)
        self._active, self._fd = segment, fd
        return segment, fd

    def _seal_active(self) -> None:
        if self._active is not None:
            self._active.sealed = True
        if self._fd is not None:
            os.close(self._fd)
        self._active, self._fd = None, None

    def _seal_after_error(self, segment: _Segment, fd: int, frames: Sequence[bytes]) -> int:
        """After a failed write or fsync of ``frames``: keep those that reached the file whole
        (the reader reads them, the drain sends them), cut a torn frame after them, and seal
        the segment (later writes go to a new one). Returns how many frames were kept.

        Only this process appends to its slot (``O_APPEND``, under the lock), so the file's
        size says how far the write got. A torn frame that cannot be cut stays beyond
        ``segment.size``, which this process never reads past; a later process reading the
        file whole skips it as a corrupt region."""
        try:
            reached = os.fstat(fd).st_size - segment.size
        except OSError:
            reached = 0  # unknown: keep none, read none
        kept = end = 0
        for frame in frames:
            if end + len(frame) > reached:
                break
            end += len(frame)
            kept += 1
        if reached > end:
            try:
                os.ftruncate(fd, segment.size + end)
            except OSError:
                pass
        segment.size += end
        self._bytes += end
        self._seal_active()
        return kept

    # -- reading and acknowledging (the worker) --------------------------------------------

    def read(self, max_events: int, max_bytes: int) -> SpoolChunk:
        """The next events after the read cursor, in order; no events means nothing unsent.

        The drainer reads, sends, then acks (or retries the same chunk), so the cursor is
        always in the oldest segment when ``read`` runs. A chunk stays within one segment.
        """
        chunk = SpoolChunk(events=[])
        while True:
            with self._lock:
                if not self._segments:
                    return chunk
                segment = self._segments[0]
                offset, limit, sealed = self._read_off, segment.size, segment.sealed
            if offset < limit:
                self._read_frames(segment, offset, limit, max_events, max_bytes, chunk)
                with self._lock:
                    if self._segments and self._segments[0] is segment:
                        self._read_off = chunk.end
                if chunk.events or chunk.end <= offset:
                    return chunk
                if chunk.end < limit:
                    continue  # skipped a damaged region; read on
                if not sealed:
                    return chunk  # caught up with the segment being written
            elif not sealed:
                chunk.segment, chunk.end = segment, offset
                return chunk
            # A sealed segment with nothing (left) to send: delete it and go on.
            with self._lock:
                if self._segments and self._segments[0] is segment:
                    self._delete(segment)
            chunk.segment = None

    def _read_frames(
        self,
        segment: _Segment,
        offset: int,
        limit: int,
        max_events: int,
        max_bytes: int,
        chunk: SpoolChunk,
    ) -> None:
        """Parse frames of ``segment`` from ``offset`` (< ``limit``) into ``chunk``."""
        fd = self._reader_fd(segment.path)
        chunk.segment = segment
        if offset < len(MAGIC):
            head = os.pread(fd, len(MAGIC), 0)
            if head != MAGIC:
                # A file shorter than its header, and the start of it, was cut while it was
                # created (a crash before its first frame): it held no event, nothing is lost.
                if not (limit <= len(MAGIC) and MAGIC.startswith(head)):
                    log.warning(
                        "spool segment %s has no valid header; skipping it", segment.path.name
                    )
                    chunk.corrupt_regions += 1
                chunk.end = limit
                return
            offset = len(MAGIC)
        buf = os.pread(fd, min(limit - offset, max(_READ_AHEAD, max_bytes)), offset)
        pos = 0
        while len(chunk.events) < max_events and chunk.nbytes < max_bytes:
            here = offset + pos
            if here >= limit:
                break
            if len(buf) - pos < _FRAME.size:
                if offset + len(buf) < limit:
                    break  # the rest is read next time
                chunk.corrupt_regions += 1  # a torn header at the end of the segment
                pos = len(buf)
                break
            length, crc = _FRAME.unpack_from(buf, pos)
            end = pos + _FRAME.size + length
            if length < _KEY_LEN.size or length > _MAX_FRAME or offset + end > limit:
                chunk.corrupt_regions += 1  # torn (cut by a crash) or damaged
                chunk.end = _resync(fd, here + 1, limit)
                self._warn_corrupt(segment, here, chunk.end)
                return
            if end > len(buf):
                if pos:
                    break  # the frame is read whole next time
                buf = os.pread(fd, _FRAME.size + length, offset)
                continue
            payload = buf[pos + _FRAME.size : end]
            if zlib.crc32(payload) != crc:
                chunk.corrupt_regions += 1
                chunk.end = _resync(fd, here + 1, limit)
                self._warn_corrupt(segment, here, chunk.end)
                return
            (key_len,) = _KEY_LEN.unpack_from(payload)
            key = payload[_KEY_LEN.size : _KEY_LEN.size + key_len]
            chunk.events.append((key, payload[_KEY_LEN.size + key_len :]))
            chunk.nbytes += length
            pos = end
        chunk.end = offset + pos

    @staticmethod
    def _warn_corrupt(segment: _Segment, start: int, resumed: int) -> None:
        log.warning(
            "spool segment %s: skipped %d bytes of a torn or corrupt frame at offset %d",
            segment.path.name,
            resumed - start,
            start,
        )

    def ack(self, chunk: SpoolChunk) -> None:
        """Kafka acknowledged ``chunk`` and everything before it: delete finished segments."""
        if chunk.segment is None:
            return
        with self._lock:
            if not self._segments or self._segments[0] is not chunk.segment:
                return
            head = chunk.segment
            if chunk.end < head.size:
                self._acked_off = max(self._acked_off, chunk.end)
                return
            if head.sealed:
                self._delete(head)
            elif head is self._active:
                self._seal_active()  # nothing was appended since the read: retire it
                self._delete(head)

    def _delete(self, segment: _Segment) -> None:
        """With the lock held: forget and remove the oldest segment."""
        self._segments.popleft()
        self._read_off = self._acked_off = 0
        self._bytes -= segment.size
        if self._read_fd is not None and self._read_fd[0] == segment.path:
            os.close(self._read_fd[1])
            self._read_fd = None
        segment.path.unlink(missing_ok=True)

    def _reader_fd(self, path: Path) -> int:
        if self._read_fd is not None:
            if self._read_fd[0] == path:
                return self._read_fd[1]
            os.close(self._read_fd[1])
        fd = os.open(path, os.O_RDONLY)
        self._read_fd = (path, fd)
        return fd

    # -- slots -----------------------------------------------------------------------------

    def _claim_slot(self) -> Path:
        for index in range(1024):
            slot = self.root / f"slot-{index}"
            fd = _try_lock(slot)
            if fd is not None:
                self._lock_fds.append(fd)
                return slot
        raise SpoolError(0, f"no free spool slot under {self.root}")

    def _orphan_slots(self) -> list[Path]:
        """Unlocked slots of other (dead) processes that still hold segments or a count of
        events lost with their owner."""
        orphans = []
        for slot in sorted(self.root.glob("slot-*"), key=_slot_index):
            if slot == self.slot:
                continue
            fd = _try_lock(slot)
            if fd is None:
                continue
            if any(slot.glob("*.seg")) or _read_unsent(fd):
                self._lock_fds.append(fd)
                orphans.append(slot)
            else:
                os.close(fd)
        return orphans

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's spool without touching it. Only the
        child's copies of the descriptors are closed: the parent's flocks survive (a flock
        lasts until every duplicate of its descriptor is closed), and nothing is written,
        unlocked or deleted. Takes no lock (another thread may have held it at the fork)."""
        self._closed = True
        fds = list(self._lock_fds)
        if self._fd is not None:
            fds.append(self._fd)
        if self._read_fd is not None:
            fds.append(self._read_fd[1])
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._lock_fds = []
        self._fd = None
        self._read_fd = None

    def close(self) -> None:
        """Close files and release the slots; an empty active segment is removed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            active = self._active
            self._seal_active()
            if active is not None and active.size <= len(MAGIC) and self._segments:
                if self._segments[-1] is active:
                    self._segments.pop()
                    self._bytes -= active.size
                    active.path.unlink(missing_ok=True)
            if self._read_fd is not None:
                os.close(self._read_fd[1])
                self._read_fd = None
            for fd in self._lock_fds:
                try:
                    os.pwrite(fd, _UNSENT.pack(0), 0)  # closed cleanly: nothing lost
                except OSError:
                    pass
                os.close(fd)  # closing the descriptor releases the flock
            self._lock_fds.clear()


def _resync(fd: int, start: int, limit: int) -> int:
    """Offset of the next frame at or after ``start`` whose header and CRC check out, else
    ``limit``. Only reached after a torn or damaged frame (segments are bounded in size)."""
    rest = os.pread(fd, limit - start, start) if limit > start else b""
    pos = 0
    while pos + _FRAME.size <= len(rest):
        length, crc = _FRAME.unpack_from(rest, pos)
        end = pos + _FRAME.size + length
        if _KEY_LEN.size <= length <= _MAX_FRAME and end <= len(rest):
            if zlib.crc32(rest[pos + _FRAME.size : end]) == crc:
                return start + pos
        pos += 1
    return limit


def _sealed_segments(slot: Path) -> list[_Segment]:
    segments = []
    for path in sorted(slot.glob("*.seg")):
        if not path.stem.isdigit():
            continue
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        segments.append(_Segment(path, size, sealed=True))
    return segments


def _try_lock(slot: Path) -> int | None:
    slot.mkdir(parents=True, exist_ok=True)
    fd = os.open(slot / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read_unsent(fd: int) -> int:
    try:
        data = os.pread(fd, _UNSENT.size, 0)
    except OSError:
        return 0
    return _UNSENT.unpack(data)[0] if len(data) == _UNSENT.size else 0


def _take_unsent(fd: int) -> int:
    """A slot's count of events lost with its last owner, reset to 0 once read."""
    count = _read_unsent(fd)
    if count:
        try:
            os.pwrite(fd, _UNSENT.pack(0), 0)
        except OSError:
            pass
    return count


def _slot_index(path: Path) -> int:
    suffix = path.name.removeprefix("slot-")
    return int(suffix) if suffix.isdigit() else 1 << 30


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
