"""Fork safety and unclean exits, without a broker: the spool slot a forked child uses, the
parent's locks surviving the child, and events lost with a process counted by the next."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.sdk import Client
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
        from producers.sdk import Client
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
