"""The worker's watchdog: a stuck worker exits, whatever made it stuck.

A Faust worker can stop making progress without failing: an await that never returns (a
send to a broker that is gone, a rebalance waiting in ``wait_empty`` for an event that is
never acknowledged), a fetcher that stopped, or its event loop blocked in synchronous code.
Its consumer thread keeps heartbeating, so the group never notices and lag grows silently.
The watchdog turns any of those into an exit (status :data:`EX_STALLED`, without committing:
at-least-once redoes the work) that the worker's supervisor answers with a restart.

Two parts:

- a **task** on the worker's loop (a plain asyncio task, not a Faust timer: Faust's timers
  wait for recovery and its commit timer can itself be what wedges) that every second stamps
  a heartbeat and samples, per assigned source partition, the stream's position, the
  committed offset and the lag (:mod:`processors.liveness` decides). While the group
  rebalances, the sources are paused on purpose; the rebalance is tracked instead, and it
  progresses while the recovery reads the changelogs;
- a **thread** that exits the process when that heartbeat is older than the bound (the loop
  is blocked, so the task cannot) and reads the partitions' log start and end offsets from
  the broker with a client of its own, so a fetcher that stopped cannot hide the lag.

Its state also answers the worker's ``/healthz`` (liveness) and ``/readyz`` (assigned and
recovered) and the metrics ``logflume_stage_stalled``, ``logflume_stage_seconds_without_
progress`` and ``logflume_stage_partition_lag`` (:mod:`processors.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP

from kernel.clients import kafka_consumer
from processors.liveness import PartitionState, Progress, StallTracker, partition_lag

__all__ = ["EX_STALLED", "Health", "Watchdog", "where_it_waits"]

log = logging.getLogger(__name__)

EX_STALLED = 75  # sysexits' EX_TEMPFAIL: stuck, try again (a failed send exits with 70)
REBALANCE = "rebalance"  # the pseudo-partition tracked while the group rebalances
STOPPING = "stopping"  # ... and while the worker stops
_BEAT_S = 1.0
_OFFSETS_EVERY_S = 5.0
_EXIT_LOG_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Health:
    """The watchdog's view, published by the task each beat (read by other threads)."""

    started: bool = False  # the consumer answers (Faust started it)
    rebalancing: bool = False
    assigned: tuple[TP, ...] = ()  # source partitions
    states: tuple[PartitionState, ...] = ()


class Watchdog:
    """Watches one worker's app; :meth:`start` it on the worker's loop before Faust runs."""

    def __init__(
        self,
        app: faust.App,
        *,
        sources: Mapping[str, str],
        changelogs: set[str],
        stall_s: float,
        rebalance_bound_s: float,
        bootstrap_servers: str,
        commit_bound_s: float | None = None,
    ) -> None:
        self.app = app
        self.sources = dict(sources)  # source topic -> stage name
        self.changelogs = set(changelogs)
        self.stall_s = stall_s
        self.rebalance_bound_s = rebalance_bound_s
        self.bootstrap_servers = bootstrap_servers
        self.tracker = StallTracker(stall_s, commit_bound_s)
        self.health = Health()
        self._heartbeat = time.monotonic()
        self._offsets: dict[tuple[str, int], tuple[int, int]] = {}  # tp -> (start, end)
        self._exiting = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- running ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._heartbeat = time.monotonic()
        self._task = loop.create_task(self._beat(), name="logflume-watchdog")
        threading.Thread(target=self._guard, name="logflume-watchdog", daemon=True).start()
        log.info("watchdog: a worker without progress for %.0f s exits", self.stall_s)

    async def _beat(self) -> None:
        failing = False
        while True:
            now = time.monotonic()
            self._heartbeat = now
            try:
                self._check(now)
                failing = False
            except Exception:  # the beat must go on: its silence means a blocked loop
                if not failing:
                    log.exception("watchdog: could not sample the consumer")
                failing = True
            await asyncio.sleep(_BEAT_S)

    def _check(self, now: float) -> None:
        health = self.sample()
        self.tracker.observe(now, self._progress(health))
        states = tuple(self.tracker.states(now))
        self.health = Health(health.started, health.rebalancing, health.assigned, states)
        stalled = [s for s in states if s.stalled]
        if stalled:
            self._exit(_describe(stalled), _task_stacks())

    def sample(self) -> Health:
        """What the consumer says now (nothing before Faust started it)."""
        consumer: Any = getattr(self.app, "_consumer", None)
        if consumer is None:
            return Health()
        try:
            assignment = consumer.assignment()
        except Exception:  # ConsumerNotStarted, or stopping
            return Health()
        assigned = tuple(sorted(tp for tp in assignment if tp.topic in self.sources))
        return Health(True, bool(self.app.rebalancing), assigned)

    def _progress(self, health: Health) -> dict[Hashable, Progress]:
        """The samples for the tracker: the source partitions, or the rebalance."""
        if self._stopping():  # a stop that takes longer than the bound is stuck too
            return {STOPPING: Progress(STOPPING, None, 1)}
        if not health.started:
            return {}
        consumer: Any = self.app.consumer
        read: Mapping[TP, int | None] = consumer._read_offset
        if health.rebalancing:
            recovered = sum(v or 0 for tp, v in list(read.items()) if tp.topic in self.changelogs)
            position = (getattr(self.app, "rebalancing_count", 0), recovered)
            return {REBALANCE: Progress(position, None, 1, self.rebalance_bound_s)}
        committed: Mapping[TP, int | None] = consumer._committed_offset
        offsets = self._offsets
        samples: dict[Hashable, Progress] = {}
        for tp in health.assigned:
            last_read = read.get(tp)
            done = committed.get(tp)
            start, end = offsets.get((tp.topic, tp.partition), (None, None))
            with contextlib.suppress(Exception):  # what the fetcher saw, maybe newer
                fetched = consumer.highwater(tp)
                if fetched is not None and (end is None or fetched > end):
                    end = fetched
            position = None if last_read is None else last_read + 1
            samples[tp] = Progress(position, done, partition_lag(end, done, start))
        return samples

    def _stopping(self) -> bool:
        return bool(getattr(self.app, "should_stop", False))

    # -- the thread ---------------------------------------------------------------------

    def _guard(self) -> None:
        asyncio.run(self._guard_loop())

    async def _guard_loop(self) -> None:
        reader: AIOKafkaConsumer | None = None
        next_read = 0.0
        try:
            while True:
                await asyncio.sleep(_BEAT_S)
                now = time.monotonic()
                blocked_s = now - self._heartbeat
                if blocked_s >= self.stall_s:
                    line = f"stalled: the event loop has not run for {blocked_s:.0f} s"
                    self._exit(line, _main_thread_stack())
                if now >= next_read:
                    next_read = now + min(_OFFSETS_EVERY_S, self.stall_s / 4)
                    reader = await self._read_offsets(reader)
        finally:
            if reader is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.stop(), _OFFSETS_EVERY_S)

    async def _read_offsets(self, reader: AIOKafkaConsumer | None) -> AIOKafkaConsumer | None:
        """The log start and end offsets of the assigned sources, from the broker; the reader
        to use next time (None after a failure: a new one then)."""
        tps = [TopicPartition(tp.topic, tp.partition) for tp in self.health.assigned]
        if not tps:
            return reader
        timeout_s = max(1.0, min(10.0, self.stall_s / 4))
        try:
            if reader is None:
                reader = kafka_consumer(
                    self.bootstrap_servers,
                    enable_auto_commit=False,
                    request_timeout_ms=int(timeout_s * 1000),
                )
                await asyncio.wait_for(reader.start(), timeout_s)
            starts = await asyncio.wait_for(reader.beginning_offsets(tps), timeout_s)
            ends = await asyncio.wait_for(reader.end_offsets(tps), timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.info("watchdog: log offsets not available (%s); retrying", type(exc).__name__)
            if reader is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.stop(), timeout_s)
            return None
        self._offsets = {(tp.topic, tp.partition): (starts[tp], ends[tp]) for tp in tps}
        return reader

    # -- exit, health -------------------------------------------------------------------

    def _exit(self, line: str, stacks: str) -> NoReturn:
        """Log the stall (one line, then where the worker waits) and exit at once, without
        committing. Logged from a thread of its own with a bound: the loop's thread may hold
        a logging lock."""
        if not self._exiting.acquire(blocking=False):
            time.sleep(_EXIT_LOG_WAIT_S * 2)  # the other path is exiting
            os._exit(EX_STALLED)

        def say() -> None:
            log.critical("%s; exiting without commit (status %d)", line, EX_STALLED)
            log.warning("watchdog: where the worker waits:\n%s", stacks)
            logging.shutdown()

        writer = threading.Thread(target=say, name="logflume-watchdog-exit", daemon=True)
        writer.start()
        writer.join(_EXIT_LOG_WAIT_S)
        os._exit(EX_STALLED)

    def loop_age_s(self) -> float:
        return time.monotonic() - self._heartbeat

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: the loop runs and no partition is stalled."""
        age = self.loop_age_s()
        stalled = [s for s in self.health.states if s.stalled]
        alive = age < self.stall_s and not stalled
        body = {
            "status": "ok" if alive else "stalled",
            "loop_heartbeat_age_s": round(age, 1),
            "stall_s": self.stall_s,
            "partitions": [_partition(s) for s in self.health.states],
        }
        return alive, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``/readyz``: alive, source partitions assigned, their state recovered."""
        alive, body = self.liveness()
        health = self.health
        reason = None
        if not alive:
            reason = "not live"
        elif not health.started:
            reason = "starting"
        elif health.rebalancing:
            reason = "rebalancing or recovering its tables"
        elif not health.assigned:
            reason = "no partitions assigned"
        body = {**body, "status": "ready" if reason is None else "not ready"}
        body["reason"] = reason
        body["assigned"] = [f"{tp.topic}:{tp.partition}" for tp in health.assigned]
        return reason is None, body

    def stage_report(self) -> dict[str, tuple[bool, float, dict[int, int]]]:
        """Per stage: (stalled, seconds without progress, lag per partition) for the
        metrics; every stage counts as stalled while the loop is blocked."""
        blocked = self.loop_age_s() >= self.stall_s
        report: dict[str, tuple[bool, float, dict[int, int]]] = {
            stage: (blocked, 0.0, {}) for stage in self.sources.values()
        }
        for state in self.health.states:
            key = state.key
            if not isinstance(key, TP) or key.topic not in self.sources:
                continue
            stage = self.sources[key.topic]
            stalled, still, lags = report[stage]
            if state.sample.lag is not None:
                lags[key.partition] = state.sample.lag
            report[stage] = (stalled or state.stalled, max(still, state.still_s), lags)
        return report


def _partition(state: PartitionState) -> dict[str, Any]:
    key: Any = state.key
    name = f"{key.topic}:{key.partition}" if hasattr(key, "topic") else str(key)
    position = state.sample.position
    return {
        "partition": name,
        "lag": state.sample.lag,
        "position": position if isinstance(position, int) else None,
        "committed": state.sample.committed,
        "seconds_without_progress": round(state.still_s, 1),
    }


def _describe(stalled: list[PartitionState]) -> str:
    parts = []
    for state in stalled:
        key: Any = state.key
        name = f"{key.topic}:{key.partition}" if hasattr(key, "topic") else str(key)
        if state.still_s >= state.held_s / 2:
            parts.append(f"{name} (lag {state.sample.lag}, still for {state.still_s:.0f} s)")
        else:
            parts.append(
                f"{name} (lag {state.sample.lag}, reading on but its committed offset held "
                f"for {state.held_s:.0f} s)"
            )
    return "stalled: no progress on " + ", ".join(parts)


def _task_stacks(depth: int = 4) -> str:
    """Every task of the running loop and what it awaits, innermost last (code locations
    only, never values)."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:
        return "  (no running loop)"
    lines = []
    for task in tasks:
        chain: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                chain.append(
                    f"{code.co_name} ({os.path.basename(code.co_filename)}:{frame.f_lineno})"
                )
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        lines.append(f"  {task.get_name()}: {' > '.join(chain[-depth:]) or 'done'}")
    return "\n".join(sorted(lines))


def where_it_waits() -> str:
    """Every thread's stack and every task of the running loop, as code locations only
    (what a worker logs when asked with SIGUSR1: :mod:`processors.worker`)."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    threads = [
        f"thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame, limit=12))
        for ident, frame in sys._current_frames().items()
    ]
    return "\n".join([*threads, "tasks:", _task_stacks()])


def _main_thread_stack() -> str:
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    if frame is None:
        return "  (no main thread)"
    return "".join(traceback.format_stack(frame, limit=12))
