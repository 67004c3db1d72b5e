"""A small process supervisor: the pipeline's stages as one group of child processes.

``logflume run`` (and the demo) start the gateway, the Faust workers and the sinks as
children of one process. Each stage stays a separate program (``logflume gateway``,
``logflume process``, ``logflume sink``), so production runs them under any other
supervisor unchanged; this one exists so that one command runs the pipeline on a laptop.

Why child processes and not tasks in one loop: Faust owns its event loop and its signal
handling, and a crash of one stage must not take the others down.

Behaviour:

- children run in their own session, so a terminal's Ctrl-C reaches only the supervisor,
  which then stops them in pipeline order (gateway, processors, sinks: what was accepted
  upstream is still drained downstream); each gets SIGTERM, then SIGKILL after
  ``stop_timeout_s``;
- on Linux each child also gets ``PR_SET_PDEATHSIG``: if the supervisor itself is killed,
  the kernel sends the child SIGTERM, so no stage outlives its group;
- a child that exits while the group is not stopping is restarted after a capped
  exponential backoff (reset once it stayed up ``stable_after_s``); more than
  ``max_restarts`` restarts within ``restart_window_s`` stops the group with exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kernel.backoff import Backoff
from kernel.settings import child_environment

__all__ = ["Child", "ChildSpec", "Supervisor", "logflume_argv"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def logflume_argv(*args: str) -> tuple[str, ...]:
    """The command line of a ``logflume`` subcommand with this interpreter."""
    return (sys.executable, "-m", "logflume", *args)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One stage process: ``name`` is unique in the group; ``order`` is its stop rank
    (lower stops first)."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    order: int = 0


@dataclass(slots=True)
class Child:
    """The running state of one :class:`ChildSpec`."""

    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    starts: int = 0
    restarts: deque[float] = field(default_factory=deque)
    last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """``preexec_fn``: ask the kernel for SIGTERM when the supervisor dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Runs a group of child processes until :meth:`stop`; :meth:`run` returns the exit
    status (0 after a requested stop, 1 when a child kept failing)."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        stop_timeout_s: float = 30.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        stable_after_s: float = 60.0,
        max_restarts: int = 10,
        restart_window_s: float = 300.0,
        log_dir: Path | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self.children = {s.name: Child(s) for s in specs}
        self.stop_timeout_s = stop_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.log_dir = log_dir
        self._on_event = on_event
        self._stopping: asyncio.Event | None = None
        self._failed: str | None = None

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the group to stop (safe to call from a signal handler, more than once)."""
        if self._stopping is not None:
            self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    def pids(self) -> dict[str, int | None]:
        return {name: child.pid for name, child in self.children.items()}

    def log_path(self, name: str) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{name}.log"

    async def run(self) -> int:
        """Start every child, keep them up, stop them all when asked; the exit status."""
        self._stopping = asyncio.Event()
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        watchers = []
        try:
            for child in self.children.values():
                await self._start(child)
            watchers = [asyncio.create_task(self._watch(c)) for c in self.children.values()]
            await self._stopping.wait()
        finally:
            self._stopping.set()
            await self._stop_all()
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        if self._failed is not None:
            log.error("stopped the group: %s", self._failed)
            return 1
        return 0

    # -- internals ----------------------------------------------------------------------------

    def _emit(self, message: str, level: int = logging.INFO, **fields: object) -> None:
        log.log(level, message, extra=fields)  # JSON logs carry the fields
        if self._on_event is not None:
            self._on_event(message)

    async def _start(self, child: Child) -> None:
        spec = child.spec
        env = child_environment(spec.env)
        out: IO[bytes] | None = None
        path = self.log_path(spec.name)
        if path is not None:
            out = path.open("ab")
        try:
            child.process = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT if out is not None else None,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        finally:
            if out is not None:
                out.close()  # the child has its own descriptor
        child.started_at = time.monotonic()
        child.starts += 1
        verb = "started" if child.starts == 1 else "restarted"
        self._emit(
            f"{spec.name} {verb} (pid {child.process.pid})",
            child=spec.name,
            pid=child.process.pid,
            starts=child.starts,
        )

    async def _watch(self, child: Child) -> None:
        """Wait for the child to exit; restart it unless the group is stopping."""
        assert self._stopping is not None
        # No jitter: one supervisor restarts its own children (nothing to spread out).
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s, jitter=0.0)
        while not self._stopping.is_set():
            process = child.process
            assert process is not None
            code = await process.wait()
            child.last_exit = code
            if self._stopping.is_set():
                return
            now = time.monotonic()
            if now - child.started_at >= self.stable_after_s:
                backoff.reset()  # it had been up for a while: a fresh fault
            window = child.restarts
            while window and now - window[0] > self.restart_window_s:
                window.popleft()
            if len(window) >= self.max_restarts:
                self._failed = (
                    f"{child.spec.name} exited {len(window) + 1} times within "
                    f"{self.restart_window_s:.0f}s (last status {_describe(code)})"
                )
                self._stopping.set()
                return
            window.append(now)
            delay = backoff.next()
            self._emit(
                f"{child.spec.name} exited unexpectedly ({_describe(code)}); "
                f"restarting in {delay:.1f}s",
                logging.WARNING,
                child=child.spec.name,
                exit=_describe(code),
                backoff_s=delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            await self._start(child)

    async def _stop_all(self) -> None:
        """SIGTERM in stop order (gateway, processors, sinks), SIGKILL after the timeout."""
        for order in sorted({c.spec.order for c in self.children.values()}):
            group = [c for c in self.children.values() if c.spec.order == order]
            await asyncio.gather(*(self._stop_child(c) for c in group))

    async def _stop_child(self, child: Child) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout_s)
            self._emit(
                f"{child.spec.name} stopped ({_describe(process.returncode)})",
                child=child.spec.name,
                exit=_describe(process.returncode),
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            self._emit(
                f"{child.spec.name} did not stop within {self.stop_timeout_s:.0f}s: killed",
                logging.WARNING,
                child=child.spec.name,
            )


def _describe(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"
