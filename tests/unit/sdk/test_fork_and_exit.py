"""Fork safety and unclean exits, without a broker: the spool slot a forked child uses (only
once it emits), the parent's locks surviving the child, and events lost with a process
counted by the next."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.sdk import Client, MemoryTransport
from producers.sdk.spool import Spool
from producers.sdk.stats import DropReason

REPO = Path(__file__).resolve().parents[3]


def open_spool(root: Path) -> Spool:
    return Spool(root, max_bytes=1 << 20, segment_bytes=1 << 16, fsync="never")


def test_a_child_that_forgets_the_parents_spool_leaves_its_lock_held(tmp_path: Path) -> None:
    parent = open_spool(tmp_path)
    parent.append([(b"k", b"before the fork")])
    pid = os.fork()
    if pid == 0:  # the child: forget the parent's spool, open its own, exit
        code = 1
        try:
            parent.forget_after_fork()
            child = open_spool(tmp_path)
            code = 0 if child.slot != parent.slot else 2
            child.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's slot is still its own: a third opener neither claims nor adopts it.
    third = open_spool(tmp_path)
    assert third.slot != parent.slot
    assert third.recovered_segments == 0
    third.close()
    assert parent.append([(b"k", b"after the fork")]) == 1
    parent.close()


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A port that accepts connections and never answers: sends stay in flight."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_events_lost_with_an_os_exit_are_counted_by_the_next_client(
    tmp_path: Path, blackhole: str
) -> None:
    spool = tmp_path / "spool"
    script = textwrap.dedent(
        f"""
        import os, time
        from producers.sdk import Client, MemoryTransport
        client = Client(bootstrap_servers={blackhole!r}, topic="t", project="p",
                        spool_dir={str(spool)!r}, send_timeout_s=60)
        for i in range(1000):
            client.log(output="x")
        time.sleep(0.5)  # a few worker cycles: the events are in flight, not acknowledged
        os._exit(0)  # no atexit, no close
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    client = Client(
        bootstrap_servers=blackhole, topic="t", project="p", spool_dir=spool, send_timeout_s=1
    )
    try:
        assert client.stats().dropped.get(DropReason.LOST_AT_EXIT) == 1000
    finally:
        client.close(0.5)
    # Counted once: the count was reset when it was read.
    again = Client(
        bootstrap_servers=blackhole, topic="t", project="p", spool_dir=spool, send_timeout_s=1
    )
    try:
        assert DropReason.LOST_AT_EXIT not in again.stats().dropped
    finally:
        again.close(0.5)


def test_a_clean_close_leaves_nothing_counted_as_lost(tmp_path: Path, blackhole: str) -> None:
    spool = tmp_path / "spool"
    first = Client(
        bootstrap_servers=blackhole, topic="t", project="p", spool_dir=spool, send_timeout_s=60
    )
    for _ in range(100):
        first.log(output="x")
    first.close(0.3)  # the deadline passes: what is in flight goes to the spool
    second = Client(
        bootstrap_servers=blackhole, topic="t", project="p", spool_dir=spool, send_timeout_s=1
    )
    try:
        assert DropReason.LOST_AT_EXIT not in second.stats().dropped
    finally:
        second.close(0.3)


def leave_orphan_slot(root: Path, lost: int) -> Path:
    """A slot whose owner died without closing while ``lost`` events were in its memory."""
    spool = open_spool(root)
    spool.mark_unsent(lost)
    spool.forget_after_fork()  # descriptors closed, nothing written: the flock is released
    return spool.slot


def lost_count(slot: Path) -> int:
    return int.from_bytes((slot / ".lock").read_bytes()[:8], "little")


def wait_child(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def fork_and_exit(client: Client) -> None:
    pid = os.fork()
    if pid == 0:  # the child asks, flushes and closes, but never emits
        code = 1
        try:
            stats = client.stats()
            ok = client.flush(1) and client.close(1)
            code = 0 if ok and stats.accepted == 0 and not stats.dropped else 2
        finally:
            os._exit(code)
    wait_child(pid)


def fork_and_exec(client: Client) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(sys.executable, [sys.executable, "-c", "pass"])
        finally:
            os._exit(1)
    wait_child(pid)


def subprocess_with_preexec_fn(client: Client) -> None:
    # With preexec_fn, subprocess forks and runs the at-fork hooks before it execs.
    subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None, check=True)


@pytest.mark.parametrize("child", [fork_and_exit, fork_and_exec, subprocess_with_preexec_fn])
def test_a_forked_child_that_never_emits_touches_no_spool_slot(
    tmp_path: Path, child: object
) -> None:
    root = tmp_path / "spool"
    client = Client(transport=MemoryTransport(), project="p", spool_dir=root)
    try:
        assert client.spool_slot == root / "slot-0"
        orphan = leave_orphan_slot(root, lost=7)  # slot-1, left by a dead process
        files = sorted(root.rglob("*"))
        child(client)  # type: ignore[operator]
        # No slot claimed, none adopted, no count read (and reset) by the child.
        assert sorted(root.rglob("*")) == files
        assert lost_count(orphan) == 7
        client.log(output="the parent goes on")
        assert client.flush(5) is True
    finally:
        client.close(1)
    # The next client to open the slot reports what its owner lost, once.
    nxt = Client(transport=MemoryTransport(), project="p", spool_dir=root)
    try:
        assert nxt.stats().dropped == {DropReason.LOST_AT_EXIT: 7}
    finally:
        nxt.close(1)


def test_a_forked_child_re_arms_at_its_first_emit_with_a_slot_of_its_own(
    tmp_path: Path,
) -> None:
    root = tmp_path / "spool"
    transport = MemoryTransport()
    client = Client(transport=transport, project="p", spool_dir=root)
    try:
        client.log(output="the parent's, before the fork")
        assert client.flush(5) is True  # idle at the fork
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_end)
                before = sorted(p.name for p in root.iterdir())
                sent_before = len(transport.event_ids())
                client.log(output="the child's")  # re-arms: a slot, a worker
                ok = client.flush(5)
                slot = client.spool_slot
                delivered = len(transport.event_ids()) - sent_before
                report = f"{ok} {delivered} {slot.name if slot else ''} {','.join(before)}"
                os.write(write_end, report.encode())
                code = 0 if client.close(5) else 2
            finally:
                os._exit(code)
        os.close(write_end)
        wait_child(pid)
        with os.fdopen(read_end) as pipe:
            ok, delivered, slot, before = pipe.read().split()
        assert (ok, delivered) == ("True", "1")
        assert before == "slot-0"  # nothing claimed until the first emit
        assert slot != "slot-0"
        assert client.spool_slot == root / "slot-0"
        client.log(output="the parent's, after the fork")
        assert client.flush(5) is True
        assert client.stats().sent == 2
    finally:
        client.close(1)


def test_a_child_forked_while_a_parent_thread_screens_a_save_false_log_does_not_hang(
    tmp_path: Path,
) -> None:
    """``log(save=False)`` screens its handles under a lock before the emit that re-arms the
    client: the child gets a fresh lock at the fork, not one a parent thread held then."""
    client = Client(transport=MemoryTransport(), project="p", spool_dir=tmp_path / "spool")
    try:
        client.log(path="a", save=False, messages=[{"role": "user", "content": "x"}])
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            with client._unsaved._lock:  # another thread of the parent, inside the screen
                held.set()
                release.wait()

        threading.Thread(target=holder, daemon=True).start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(10)  # a hang ends the child with SIGALRM, not the test run
                client.log(path="b", save=False, messages=[{"role": "user", "content": "y"}])
                code = 0 if client.close(5) else 2
            finally:
                os._exit(code)
        release.set()
        wait_child(pid)
    finally:
        client.close(1)
