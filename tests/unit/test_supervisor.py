"""The supervisor with real child processes (small Python scripts): restart with backoff,
stop in order with SIGTERM, SIGKILL after the timeout, give up on a crash loop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from logflume.supervisor import ChildSpec, Supervisor

SLEEPER = (sys.executable, "-c", "import time; time.sleep(600)")
STUBBORN = (sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")  # fmt: skip
CRASHER = (sys.executable, "-c", "raise SystemExit(3)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


async def _until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_killed_child_is_restarted_and_stop_ends_all() -> None:
    events: list[str] = []
    sup = Supervisor([ChildSpec("a", SLEEPER, order=0), ChildSpec("b", SLEEPER, order=1)],
                     backoff_initial_s=0.1, on_event=events.append)  # fmt: skip
    task = asyncio.create_task(sup.run())
    await _until(lambda: all(sup.pids().values()))
    first = sup.pids()["b"]
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await _until(lambda: sup.pids()["b"] not in (None, first))
    assert any("b exited unexpectedly (signal SIGKILL)" in e for e in events)
    pids = [p for p in sup.pids().values() if p is not None]
    sup.stop()
    assert await asyncio.wait_for(task, 20) == 0
    assert not any(_alive(p) for p in pids)
    stops = [e for e in events if "stopped" in e]
    assert stops[0].startswith("a ") and stops[1].startswith("b ")  # upstream first


async def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    events: list[str] = []
    sup = Supervisor([ChildSpec("stubborn", STUBBORN)], stop_timeout_s=1.0, log_dir=tmp_path,
                     on_event=events.append)  # fmt: skip
    task = asyncio.create_task(sup.run())
    log = tmp_path / "stubborn.log"
    await _until(lambda: log.exists() and b"ready" in log.read_bytes())
    pid = sup.pids()["stubborn"]
    sup.stop()
    started = time.monotonic()
    assert await asyncio.wait_for(task, 20) == 0
    assert 0.9 < time.monotonic() - started < 10
    assert pid is not None and not _alive(pid)
    assert any("did not stop within 1s: killed" in e for e in events)


async def test_a_crash_loop_stops_the_group_with_status_1() -> None:
    sup = Supervisor([ChildSpec("crasher", CRASHER), ChildSpec("ok", SLEEPER)],
                     backoff_initial_s=0.05, backoff_max_s=0.1, max_restarts=3)  # fmt: skip
    assert await asyncio.wait_for(sup.run(), 30) == 1
    assert sup.children["crasher"].starts == 4
    assert sup.children["crasher"].last_exit == 3
    ok_pid = sup.pids()["ok"]
    assert ok_pid is not None and not _alive(ok_pid)


def test_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ChildSpec("a", SLEEPER), ChildSpec("a", SLEEPER)])
