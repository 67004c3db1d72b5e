"""Benchmark of the fire-and-forget SDK against a naive ``send_and_wait``-per-event emitter.

Measures, against a real broker, in one run:

* call-site cost of ``client.log(...)`` (p50, p99, p99.9, max in µs) with the broker up,
  and with the broker down (bootstrap pointing at a closed port: events go to the spool);
* events/s delivered to Kafka (first call until ``flush()`` returned: all acknowledged);
* events/s re-sent from the spool by a new client after the broker-down run;
* the naive emitter: build the event with the contract's models, ``encode_event``, then
  ``await producer.send_and_wait(...)`` per event (idempotent, acks=all);
* the tail at a sustained rate (``--paced-calls`` at ``--rate``, 1M at 50k/s by default): a
  burst of calls each millisecond, then a sleep (an app that does I/O between calls), with
  p99.99 and the maximum, broker up with the garbage collector on and off, broker down, and
  the same loop calling a no-op function: the floor of this machine (its scheduler's
  pauses) measured in the same run; and the cause of each call over 1 ms (:class:`SlowCalls`:
  the OS gave the caller's CPU to the SDK's worker or to another process, or the caller was
  on a CPU itself, or asleep on a lock: the GIL), from the threads' schedstat around every
  burst; and how
  late the caller woke from each sleep (what a waking app thread waits for a CPU or the GIL);
* the paced runs once per placement (``--placement``, both by default): ``shared`` (the app
  and the local broker on every CPU) and ``split`` (this process on the first CPU, the broker
  of ``logflume up`` on the others for the run, as when the broker is on other machines);
  ``shared-batch`` on request (shared, the broker's threads in the batch scheduling class for
  the run, so that they cannot preempt a running app thread on waking: the shared
  placement's calls over 1 ms that this removes were the broker's).

Usage::

    python bench/sdk_bench.py --bootstrap 127.0.0.1:29092 [--events 100000]
        [--naive-events 5000] [--paced-calls 1000000 --rate 50000]
        [--placement shared|split|shared-batch|both] [--save run.json] [--baseline previous.json]

Goals: p50 <= 5 µs, p99 <= 50 µs per call (tight loop); at 50k calls/s p99.9 <= 50 µs and
max <= 1 ms. Creates (and deletes) its own topic.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import platform
import resource
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's root

from kernel.settings import Settings
from logflume.services.kafka import LocalKafka
from producers.contract import LogEvent, encode_event
from producers.sdk import Client

GOAL_P50_US = 5.0
GOAL_P99_US = 50.0
GOAL_PACED_P999_US = 50.0
GOAL_PACED_MAX_US = 1000.0
MESSAGES = [
    {"role": "system", "content": "You are a helpful support assistant for Acme."},
    {"role": "user", "content": "My internet is not working since this morning."},
]
OUTPUT = "Sorry about that. Could you share your customer id so I can check the line?"


def call_kwargs(i: int) -> dict[str, Any]:
    return {
        "path": "support/answer",
        "messages": MESSAGES,
        "output": OUTPUT,
        "prompt_tokens": 120,
        "output_tokens": 24,
        "reference_id": f"ticket-{i}",
        "session_id": "sess-bench",
        "metadata": {"tier": "gold"},
    }


def percentiles(samples_ns: Sequence[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(n * q))] / 1000

    return {
        "p50_us": at(0.5),
        "p99_us": at(0.99),
        "p999_us": at(0.999),
        "p9999_us": at(0.9999),
        "max_us": at(1.0),
        "over_1ms": sum(1 for ns in ordered[int(n * 0.99) :] if ns > 1_000_000),
    }


def emit(client: Client, count: int) -> list[int]:
    """Call ``client.log`` ``count`` times in a tight loop; per-call nanoseconds."""
    samples = [0] * count
    clock = time.perf_counter_ns
    log = client.log
    for i in range(count):
        kwargs = call_kwargs(i)
        start = clock()
        log(**kwargs)
        samples[i] = clock() - start
    return samples


class Schedstat:
    """A thread's ``/proc/.../schedstat`` (Linux): nanoseconds on a CPU, and nanoseconds
    runnable but waiting for one (its run-queue wait). Read with one ``pread`` (~1 µs)."""

    def __init__(self, native_id: int | None = None) -> None:
        path = "/proc/thread-self/schedstat" if native_id is None else (
            f"/proc/self/task/{native_id}/schedstat"
        )  # fmt: skip
        self._fd = os.open(path, os.O_RDONLY)

    def read(self) -> tuple[int, int]:
        on_cpu, waiting = os.pread(self._fd, 128, 0).split()[:2]
        return int(on_cpu), int(waiting)

    def close(self) -> None:
        os.close(self._fd)


class SlowCalls:
    """Why each call over 1 ms was slow, from the schedstat of the calling thread and of the
    SDK's worker thread read around every burst (not every call: a read costs ~1 µs).

    A burst of calls whose slowest took ``M`` and whose caller waited ``W`` on a run queue
    (runnable, no CPU) in a burst of wall time ``B``: at least ``W - (B - M)`` of that wait
    fell inside the slow call. When that is at least half of ``M``, the call was slow
    because the OS gave its CPU to another thread: to the SDK's worker if the worker was on a
    CPU for at least as long in that burst, else to another process (on this machine, the
    broker shares the 2 cores). Otherwise the caller was on a CPU itself for at least half
    of the slow call (its own work, a collector pass, a page fault: ``running``), or else
    asleep, neither running nor waiting for a CPU: on a lock, the GIL (``asleep``)."""

    CAUSES = ("cpu_to_sdk_worker", "cpu_to_other", "running", "asleep")

    def __init__(self, worker_ids: Sequence[int] = ()) -> None:
        available = os.path.exists("/proc/thread-self/schedstat")
        self._caller = Schedstat() if available else None
        self._workers = [Schedstat(t) for t in worker_ids] if available else []
        self.counts: collections.Counter[str] = collections.Counter()
        self.longest_not_os_us = 0.0  # the slowest call, less the wait the OS imposed on it
        self._before: tuple[int, int, int] = (0, 0, 0)

    def _worker_cpu(self) -> int:
        return sum(w.read()[0] for w in self._workers)

    def before(self) -> None:
        if self._caller is not None:
            self._before = (*self._caller.read(), self._worker_cpu())

    def after(self, slowest_ns: int, burst_ns: int) -> None:
        in_call = 0  # of the caller's run-queue wait, what fell inside the slowest call
        if slowest_ns > 1_000_000:
            cause = "unattributed"
            if self._caller is not None:
                ran0, waited0, worker0 = self._before
                ran, waited = self._caller.read()
                in_call = max(0, (waited - waited0) - (burst_ns - slowest_ns))
                if in_call * 2 < slowest_ns:
                    # Of the caller's CPU time in the burst, what fell inside the slow call.
                    ran_in_call = max(0, (ran - ran0) - (burst_ns - slowest_ns))
                    cause = "running" if ran_in_call * 2 >= slowest_ns else "asleep"
                elif self._worker_cpu() - worker0 >= in_call:
                    cause = "cpu_to_sdk_worker"
                else:
                    cause = "cpu_to_other"
            self.counts[cause] += 1
        self.longest_not_os_us = max(self.longest_not_os_us, (slowest_ns - in_call) / 1000)

    def summary(self) -> dict[str, Any]:
        return {
            **{cause: self.counts[cause] for cause in (*self.CAUSES, "unattributed")},
            "longest_less_os_wait_us": self.longest_not_os_us,
        }

    def close(self) -> None:
        for stat in [self._caller, *self._workers]:
            if stat is not None:
                stat.close()


def paced(
    log: Callable[..., Any], count: int, rate: int, slow: SlowCalls | None = None
) -> tuple[array[int], array[int]]:
    """Call ``log`` ``count`` times at ``rate`` calls/s: a burst each millisecond, then a
    sleep until the next one. Returns per-call nanoseconds, and how late (ns) the caller
    woke from each sleep (a burst that ended late has no sleep after it): the OS's timer
    and scheduler, the wait for a CPU, and the wait for the GIL, which a sleeping thread
    takes back before it runs again. Those waits fall outside the calls but are the app's
    all the same: a worker that kept a CPU or the GIL for milliseconds shows here.
    ``slow`` attributes the calls over 1 ms."""
    # An array, not a list: a million int objects in a list would make every full pass of
    # the collector visit them, a pause this benchmark would cause itself.
    samples = array("q", bytes(8 * count))
    clock = time.perf_counter_ns
    per_tick = max(1, rate // 1000)
    late = array("q", bytes(8 * -(-count // per_tick)))
    slept = 0
    start = time.perf_counter()
    i = tick = 0
    while i < count:
        tick += 1
        if slow is not None:
            slow.before()
        burst_began, slowest = clock(), 0
        for _ in range(min(per_tick, count - i)):
            kwargs = call_kwargs(i)
            began = clock()
            log(**kwargs)
            took = samples[i] = clock() - began
            slowest = max(slowest, took)
            i += 1
        if slow is not None:
            slow.after(slowest, clock() - burst_began)
        due = start + tick / 1000
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
            late[slept] = int((time.perf_counter() - due) * 1e9)
            slept += 1
    return samples, late[:slept]


def wake_late(late_ns: Sequence[int]) -> dict[str, float]:
    """p99.9 and the maximum of how late the caller woke (µs), and how often by over 1 ms."""
    ordered = sorted(late_ns)
    n = len(ordered)
    return {
        "p999_us": ordered[min(n - 1, int(n * 0.999))] / 1000 if n else 0.0,
        "max_us": ordered[-1] / 1000 if n else 0.0,
        "over_1ms": sum(1 for ns in ordered if ns > 1_000_000),
    }


def paced_scenario(
    name: str, bootstrap: str, topic: str, count: int, rate: int, spool: Path
) -> dict[str, Any]:
    """One paced run: ``null`` (a no-op function), ``up``/``up_gc_off`` (broker up, the
    collector on/off), ``up_contract`` (broker up, validation by the contract's models only,
    as before the msgspec mirror) or ``down`` (nothing listens: every event goes to the spool)."""
    if name == "null":
        slow = SlowCalls()
        start = time.perf_counter()
        samples, late = paced(lambda **kwargs: None, count, rate, slow)
        slow.close()
        return {
            **percentiles(samples),
            "wake_late": wake_late(late),
            "calls": count,
            "rate": count / (time.perf_counter() - start),
            "slow_calls": slow.summary(),
        }
    server = f"127.0.0.1:{closed_port()}" if name == "down" else bootstrap
    client = Client(
        bootstrap_servers=server,
        topic=topic,
        project="bench",
        spool_dir=spool,
        send_timeout_s=2,
        fast_validation=name != "up_contract",
    )
    if name != "down":
        client.log(output="warm-up")
        client.flush(30)
    gc.collect()
    if name == "up_gc_off":
        gc.disable()
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    pauses_cpu: dict[int, list[float]] = {0: [], 1: [], 2: []}
    began = [0, 0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        # Wall time and CPU time of the pass: a pass that takes milliseconds of wall time
        # and microseconds of CPU is a thread the OS descheduled, not the collector's work.
        if phase == "start":
            began[0], began[1] = time.perf_counter_ns(), time.thread_time_ns()
        else:
            pauses[info["generation"]].append((time.perf_counter_ns() - began[0]) / 1000)
            pauses_cpu[info["generation"]].append((time.thread_time_ns() - began[1]) / 1000)

    gc.callbacks.append(on_gc)
    steps = WorkerSteps()
    workers = [t.native_id for t in threading.enumerate() if t.name == "logflume-sdk-worker"]
    slow = SlowCalls([t for t in workers if t is not None])
    try:
        start = time.perf_counter()
        with steps:
            samples, late = paced(client.log, count, rate, slow)
        elapsed = time.perf_counter() - start
    finally:
        gc.callbacks.remove(on_gc)
        gc.enable()
        slow.close()
    delivered = client.flush(120) if name != "down" else None
    stats = client.stats()
    client.close(0.5 if name == "down" else 10)
    return {
        **percentiles(samples),
        "wake_late": wake_late(late),
        "calls": count,
        "rate": count / elapsed,
        "delivered_all": delivered,
        "spooled": stats.spooled,
        "dropped": dict(stats.dropped),
        "gc": {
            f"gen{g}": {
                "passes": len(p),
                "max_us": max(p, default=0.0),
                "max_cpu_us": max(pauses_cpu[g], default=0.0),
            }
            for g, p in pauses.items()
        },
        "worker_steps": steps.summary(),
        "slow_calls": slow.summary(),
    }


class WorkerSteps:
    """CPU and wall time of each step of the worker's event loop (``Handle._run``: one
    callback or one slice of a coroutine), measured on that thread. A step's CPU time bounds
    how long the worker holds the GIL at once (less what C code inside it runs without the
    GIL: zstd, socket writes), which is how long a calling thread can wait for it; a step
    whose wall time is far above its CPU time is the OS scheduler's doing."""

    def __init__(self) -> None:
        self._cpu: list[int] = []
        self._wall: list[int] = []
        self._long: collections.Counter[str] = collections.Counter()
        self._original: Callable[..., Any] | None = None

    def __enter__(self) -> WorkerSteps:
        original = self._original = asyncio.events.Handle._run
        cpu, wall, long_steps = self._cpu, self._wall, self._long
        main = threading.main_thread()

        def timed(handle: asyncio.events.Handle) -> None:
            if threading.current_thread() is main:
                return original(handle)  # type: ignore[no-any-return]
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            try:
                original(handle)
            finally:
                spent = time.thread_time_ns() - c0
                cpu.append(spent)
                wall.append(time.perf_counter_ns() - w0)
                if spent > 1_000_000:
                    long_steps[_step_name(handle)] += 1

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]

    def summary(self) -> dict[str, Any]:
        if not self._cpu:
            return {"steps": 0}
        cpu = sorted(self._cpu)
        return {
            "steps": len(cpu),
            "cpu_p99_us": cpu[int(len(cpu) * 0.99)] / 1000,
            "cpu_max_us": cpu[-1] / 1000,
            "cpu_over_1ms": sum(1 for c in cpu if c > 1_000_000),
            "cpu_over_50us": sum(1 for c in cpu if c > 50_000),
            "wall_max_us": max(self._wall) / 1000,
            "over_1ms_by_step": dict(self._long.most_common(5)),
        }


def _step_name(handle: asyncio.events.Handle) -> str:
    """What a loop step ran: the coroutine of a task's step, else the callback."""
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        return str(task.get_coro().__qualname__)  # type: ignore[union-attr]
    return str(getattr(callback, "__qualname__", callback))


PLACEMENTS = {
    "shared": "the app and the local broker on every CPU, as the OS places them",
    "split": "the app (caller and SDK worker) on CPU {app}, the local broker on {rest}: "
    "as in production, where the broker runs on other machines",
    "shared-batch": "the app and the local broker on every CPU, the broker's threads in the "
    "batch scheduling class for the run: the OS no longer lets them preempt a running app "
    "thread when they wake (which of the shared placement's slow calls were the broker's)",
}


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def _each_thread(pid: int, act: Callable[[int], None]) -> None:
    """``act`` on every thread of ``pid``, again until no new thread shows up: a thread
    started meanwhile inherits its starter's settings, which ``act`` may not have changed
    yet."""
    done: set[int] = set()
    for _ in range(10):
        new = [tid for tid in _threads(pid) if tid not in done]
        if not new:
            return
        for tid in new:
            with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
                act(tid)
        done.update(new)


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus``."""
    _each_thread(pid, lambda tid: os.sched_setaffinity(tid, cpus))


@contextlib.contextmanager
def placed(placement: str, bootstrap: str) -> Iterator[str]:
    """Run the block with this process's threads and the local broker's on the CPUs of
    ``placement`` (see :data:`PLACEMENTS`); yields its description. Afterwards the threads
    of both get the CPUs this process's main thread had."""
    if placement == "shared":
        yield PLACEMENTS["shared"]
        return
    broker_pid = local_broker_pid(bootstrap)
    if broker_pid is None or not hasattr(os, "sched_setaffinity"):
        raise PlacementUnavailable("needs Linux and the local broker of `logflume up`")
    if placement == "shared-batch":
        with _in_batch_class(broker_pid):
            yield PLACEMENTS["shared-batch"]
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise PlacementUnavailable("needs two CPUs")
    app, rest = {cpus[0]}, set(cpus[1:])
    own = os.sched_getaffinity(0)
    try:
        os.sched_getaffinity(broker_pid)
    except OSError as exc:  # the broker ended, or is another user's
        raise PlacementUnavailable(f"cannot read the broker's CPUs: {exc}") from exc
    try:
        try:
            _pin(broker_pid, rest)
            _pin(os.getpid(), app)
        except OSError as exc:
            raise PlacementUnavailable(f"cannot move the threads: {exc}") from exc
        yield PLACEMENTS["split"].format(app=cpus[0], rest=",".join(map(str, sorted(rest))))
    finally:
        with contextlib.suppress(OSError):
            _pin(os.getpid(), own)
        with contextlib.suppress(OSError):
            # The CPUs this process had, not the broker's own mask: a bench killed in a
            # split run (SIGKILL) left the broker on fewer CPUs, and that is not kept.
            _pin(broker_pid, own)


@contextlib.contextmanager
def _in_batch_class(pid: int) -> Iterator[None]:
    """Every thread of ``pid`` in the batch scheduling class (``SCHED_BATCH``, same nice
    and same share of the CPU, but a waking thread never preempts a running one) for the
    block; afterwards each thread back in the class it had (a thread started meanwhile:
    the normal class, as the broker's threads start)."""
    before: dict[int, tuple[int, int]] = {}  # thread -> its class and priority

    def to_batch(tid: int) -> None:
        before[tid] = (os.sched_getscheduler(tid), os.sched_getparam(tid)[0])
        os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))

    try:
        _each_thread(pid, to_batch)
    except OSError as exc:
        _restore_class(pid, before)
        raise PlacementUnavailable(f"cannot change the broker's scheduling: {exc}") from exc
    try:
        yield
    finally:
        _restore_class(pid, before)


def _restore_class(pid: int, before: dict[int, tuple[int, int]]) -> None:
    for tid in _threads(pid):
        with contextlib.suppress(OSError):
            policy, priority = before.get(tid, (os.SCHED_OTHER, 0))
            os.sched_setscheduler(tid, policy, os.sched_param(priority))


class PlacementUnavailable(Exception):
    """A placement this machine or these services cannot give."""


def local_broker_pid(bootstrap: str) -> int | None:
    """The pid of the broker of ``logflume up`` if ``bootstrap`` is it, else None."""
    broker = LocalKafka(Settings())
    pid = broker.pid()
    return pid if pid is not None and bootstrap.strip() == broker.address else None


PACED = [
    ("no-op function (floor)", "null"),
    ("sdk, broker up", "up"),
    ("sdk, up, contract models only", "up_contract"),
    ("sdk, broker up, gc off", "up_gc_off"),
    ("sdk, broker down (spool)", "down"),
]


def print_paced(placement: str, run: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    paced_results = run["rows"]
    print()
    rate = paced_results["null"]["rate"]
    calls = paced_results["null"]["calls"]
    print(
        f"paced, placed {placement} ({run['where']}): {calls:,} calls at {rate:,.0f} calls/s each"
    )
    header = f"{'emitter':28} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>14} {'p99.99 µs':>10}"
    header += f" {'max µs':>16} {'>1 ms':>6} {'woke late p99.9/max µs':>23}"
    print(header)
    print("-" * len(header))
    before = paced_baseline(baseline, placement)
    for label, key in PACED:
        row = paced_results.get(key)
        if row is None:
            continue
        base = before.get(key, {})
        cells = [
            f"{label:28}",
            f"{fmt(row['p50_us'], 2):>8}",
            f"{fmt(row['p99_us'], 1):>8}",
            f"{fmt(row['p999_us'], 1) + delta(row['p999_us'], base.get('p999_us')):>14}",
            f"{fmt(row['p9999_us'], 0):>10}",
            f"{fmt(row['max_us'], 0) + delta(row['max_us'], base.get('max_us')):>16}",
            f"{row['over_1ms']:>6}",
            f"{late_text(row.get('wake_late')):>23}",
        ]
        print(" ".join(cells))
    for key in ("up", "up_contract", "up_gc_off", "down"):
        row = paced_results.get(key)
        if row is None:
            continue
        collector = ", ".join(
            f"{gen}: {v['passes']} passes, longest {v['max_us'] / 1000:.1f} ms"
            f" (CPU at most {v.get('max_cpu_us', 0) / 1000:.2f} ms)"
            for gen, v in row["gc"].items()
            if v["passes"]
        )
        print(f"collector during {key}: {collector or 'no pass'}")
        steps = row.get("worker_steps", {})
        if steps.get("steps"):
            print(
                f"worker loop steps during {key}: {steps['steps']:,}, CPU p99 "
                f"{steps['cpu_p99_us']:,.0f} µs, max {steps['cpu_max_us']:,.0f} µs "
                f"({steps['cpu_over_50us']:,} over 50 µs, {steps['cpu_over_1ms']} over 1 ms); "
                f"longest in wall time {steps['wall_max_us'] / 1000:,.1f} ms"
            )
            if steps.get("over_1ms_by_step"):
                print(f"  steps over 1 ms of CPU: {steps['over_1ms_by_step']}")
    for label, key in PACED:
        why = paced_results.get(key, {}).get("slow_calls")
        if not why or not paced_results[key].get("over_1ms"):
            continue
        print(
            f"bursts with a call over 1 ms, {label}: the OS gave the caller's CPU to the SDK's "
            f"worker {why['cpu_to_sdk_worker']}, to another process {why['cpu_to_other']}; "
            f"the caller on a CPU {why.get('running', 0)}, asleep (the GIL) "
            f"{why.get('asleep', 0)}"
            + (f", unattributed {why['unattributed']}" if why["unattributed"] else "")
            + f"; the slowest call less its run-queue wait "
            f"{why['longest_less_os_wait_us']:,.0f} µs"
        )
    for key in ("up", "up_gc_off", "down"):
        row = paced_results.get(key)
        if row is None:
            continue
        ok = row["p999_us"] <= GOAL_PACED_P999_US and row["max_us"] <= GOAL_PACED_MAX_US
        why = row.get("slow_calls") or {}
        # The SDK's own share of the slowest call: the call less the time the OS ran another
        # task on the caller's CPU (the SDK's worker taking it counts against the SDK).
        own = why.get("longest_less_os_wait_us", row["max_us"])
        others = why.get("cpu_to_other", 0)
        own_ok = own <= GOAL_PACED_MAX_US and not why.get("cpu_to_sdk_worker")
        note = ""
        if not ok and others:
            note = (
                f" ({others} of the calls over 1 ms: the OS running another process on the"
                f" caller's CPU; every call less its run-queue wait <= {own:,.0f} µs:"
                f" {'met' if own_ok else 'NOT met'})"
            )
        print(
            f"goal p99.9 <= {GOAL_PACED_P999_US:g} µs, max <= {GOAL_PACED_MAX_US:g} µs "
            f"({key}, placed {placement}): {'met' if ok else 'NOT met'}"
            + ("" if key == "down" else f"; delivered all: {row['delivered_all']}")
            + note
        )


def minor_faults() -> int:
    """This process's minor page faults so far (every thread). A first touch of a page costs
    ~2 µs on a VM that hands freed pages back to its host: per call, they show whether the
    queued events made the allocator take fresh memory (README, "the orjson.dumps line")."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def sdk_broker_up(
    bootstrap: str, topic: str, count: int, spool: Path, *, fast_validation: bool = True
) -> dict[str, Any]:
    client = Client(
        bootstrap_servers=bootstrap,
        topic=topic,
        project="bench",
        spool_dir=spool,
        fast_validation=fast_validation,
    )
    client.log(output="warm-up")  # connects the producer before the clock starts
    client.flush(30)
    start = time.perf_counter()
    cpu_start = time.process_time()  # every thread of this process: caller, worker, loop
    faults_start = minor_faults()
    samples = emit(client, count)
    faults = minor_faults() - faults_start
    emitted = time.perf_counter() - start
    delivered = client.flush(120)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    stats = client.stats()
    client.close(10)
    return {
        **percentiles(samples),
        "events": count,
        "emit_s": emitted,
        "delivered_all": delivered,
        "events_per_s": count / elapsed if delivered else 0.0,
        # CPU per event bounds the rate one process can reach (caller and worker share the
        # GIL): 1e6 / cpu_us_per_event events/s with a core to itself. It is also less
        # disturbed than events/s by other work on a shared machine.
        "cpu_us_per_event": cpu / count * 1e6,
        "faults_per_call": faults / count,
        "spooled": stats.spooled,
        "dropped": dict(stats.dropped),
    }


def validator_ab(bootstrap: str, topic: str, count: int, rounds: int) -> list[dict[str, Any]]:
    """The tight loop, broker up, with the contract's models only and with the msgspec
    mirror first, alternating in ``rounds`` rounds: a before/after ratio from one run."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="logflume-sdk-bench-") as tmp:
        for i in range(rounds):
            for fast in (False, True):
                gc.collect()
                spool = Path(tmp) / f"ab-{i}-{fast}"
                row = sdk_broker_up(bootstrap, topic, count, spool, fast_validation=fast)
                runs.append({"round": i, "fast_validation": fast, **row})
    return runs


def print_ab(runs: list[dict[str, Any]]) -> None:
    header = f"{'validation':28} {'round':>5} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9}"
    header += f" {'events/s':>9} {'CPU µs/event':>13}"
    print(header)
    print("-" * len(header))
    for row in runs:
        label = "mirror first (default)" if row["fast_validation"] else "contract's models only"
        print(
            f"{label:28} {row['round']:>5} {fmt(row['p50_us'], 2):>8} {fmt(row['p99_us'], 2):>8}"
            f" {fmt(row['p999_us']):>9} {fmt(row['events_per_s'], 0):>9}"
            f" {fmt(row['cpu_us_per_event'], 2):>13}"
        )
    pairs = [(a, b) for a, b in zip(runs[::2], runs[1::2], strict=True)]
    rate = sorted(b["events_per_s"] / a["events_per_s"] for a, b in pairs if a["events_per_s"])
    cpu = sorted(b["cpu_us_per_event"] / a["cpu_us_per_event"] for a, b in pairs)
    if rate and cpu:
        rates = ", ".join(f"x{r:.2f}" for r in rate)
        cpus = ", ".join(f"x{r:.2f}" for r in cpu)
        print(f"mirror first / contract only, per round: events/s {rates}; CPU/event {cpus}")
    best = min(row["cpu_us_per_event"] for row in runs if row["fast_validation"])
    print(
        f"best CPU per event with the defaults: {best:.2f} µs = {1e6 / best:,.0f} events/s "
        "from one process with a core to itself (goal 100,000)"
    )
    print()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def sdk_broker_down(bootstrap: str, topic: str, count: int, spool: Path) -> dict[str, Any]:
    down = f"127.0.0.1:{closed_port()}"
    client = Client(
        bootstrap_servers=down, topic=topic, project="bench", spool_dir=spool, send_timeout_s=2
    )
    start = time.perf_counter()
    faults_start = minor_faults()
    samples = emit(client, count)
    faults = minor_faults() - faults_start
    emitted = time.perf_counter() - start
    client.close(0.5)  # whatever is not in the spool yet goes there now
    stats = client.stats()
    result = {
        **percentiles(samples),
        "events": count,
        "emit_s": emitted,
        "faults_per_call": faults / count,
        "spooled": stats.spooled,
        "dropped": dict(stats.dropped),
    }
    # The broker is back: a new client on the same spool sends what the last one left.
    start = time.perf_counter()
    again = Client(bootstrap_servers=bootstrap, topic=topic, project="bench", spool_dir=spool)
    delivered = again.flush(120)
    elapsed = time.perf_counter() - start
    resent = again.stats().resent_from_spool
    again.close(10)
    result["respool_delivered_all"] = delivered
    result["respool_events_per_s"] = resent / elapsed if delivered else 0.0
    return result


async def naive(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """What a naive emitter does: validate, encode, ``send_and_wait`` per event."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, compression_type="lz4"
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"[]")  # warm-up
        samples = [0] * count
        clock = time.perf_counter_ns
        start = time.perf_counter()
        for i in range(count):
            t0 = clock()
            event = LogEvent.model_validate(
                {
                    "event_id": f"evt_{uuid.uuid4().hex}",
                    "ts": datetime.now(UTC),
                    "project": "bench",
                    "body": {"id": f"data_{uuid.uuid4().hex}", **call_kwargs(i)},
                }
            )
            await producer.send_and_wait(topic, encode_event(event), key=f"ticket-{i}".encode())
            samples[i] = clock() - t0
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
    return {**percentiles(samples), "events": count, "events_per_s": count / elapsed}


async def make_topic(bootstrap: str, partitions: int) -> str:
    name = f"logflume-sdk-bench-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()
    return name


async def drop_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


ROWS = [
    ("sdk, broker up", "sdk_up"),
    ("sdk, broker down (spool)", "sdk_down"),
    ("naive send_and_wait", "naive"),
]


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def delta(now: float | None, before: float | None) -> str:
    if now is None or before is None or before == 0:
        return ""
    return f" ({(now - before) / before * 100:+.0f}%)"


def print_table(results: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    header = f"{'emitter':28} {'events':>8} {'p50 µs':>14} {'p99 µs':>14} {'p99.9 µs':>12}"
    header += f" {'max µs':>10} {'faults/call':>11} {'events/s to Kafka':>24}"
    print(header)
    print("-" * len(header))
    for label, key in ROWS:
        row = results[key]
        base = (baseline or {}).get("results", {}).get(key, {})
        rate = row.get("events_per_s")
        if key == "sdk_down":
            rate = row.get("respool_events_per_s")
        base_rate = base.get("respool_events_per_s" if key == "sdk_down" else "events_per_s")
        cells = [
            f"{label:28}",
            f"{fmt(row['events']):>8}",
            f"{fmt(row['p50_us'], 2) + delta(row['p50_us'], base.get('p50_us')):>14}",
            f"{fmt(row['p99_us'], 2) + delta(row['p99_us'], base.get('p99_us')):>14}",
            f"{fmt(row['p999_us']):>12}",
            f"{fmt(row['max_us'], 0):>10}",
            f"{fmt(row.get('faults_per_call'), 2):>11}",
            f"{fmt(rate, 0) + delta(rate, base_rate):>24}",
        ]
        print(" ".join(cells))
    print()
    down = results["sdk_down"]
    print(
        "broker down: events/s column = re-sent from the spool by the next client "
        f"(spooled {down['spooled']:,}, dropped {down['dropped'] or 0})"
    )
    up = results["sdk_up"]
    speedup = up["events_per_s"] / results["naive"]["events_per_s"]
    print(f"sdk vs naive: {speedup:,.0f}x events/s delivered")
    for name in ("sdk_up", "sdk_down"):
        row = results[name]
        ok = row["p50_us"] <= GOAL_P50_US and row["p99_us"] <= GOAL_P99_US
        print(
            f"goal p50 <= {GOAL_P50_US:g} µs, p99 <= {GOAL_P99_US:g} µs ({name}): "
            f"{'met' if ok else 'NOT met'}"
        )
    if baseline:
        print(f"(deltas against {baseline.get('when', 'the baseline')})")


def late_text(late: dict[str, float] | None) -> str:
    if not late:
        return "-"
    return f"{late['p999_us']:,.0f} / {late['max_us']:,.0f}"


def paced_baseline(baseline: dict[str, Any] | None, placement: str) -> dict[str, Any]:
    """The rows of ``placement`` in a saved run (runs saved before placements: ``shared``)."""
    if not baseline:
        return {}
    placed_runs = baseline.get("paced_placements")
    if placed_runs is None:
        return dict(baseline.get("paced", {})) if placement == "shared" else {}
    return dict(placed_runs.get(placement, {}).get("rows", {}))


def run_paced(args: argparse.Namespace, topic: str) -> dict[str, Any]:
    """The paced scenarios once per placement of ``--placement``."""
    wanted = ["shared", "split"] if args.placement == "both" else [args.placement]
    runs: dict[str, Any] = {}
    for placement in wanted:
        try:
            with placed(placement, args.bootstrap) as where:
                print(f"paced runs, placed {placement}: {where}", flush=True)
                with tempfile.TemporaryDirectory(prefix="logflume-sdk-bench-") as tmp:
                    rows = {
                        key: paced_scenario(
                            key, args.bootstrap, topic, args.paced_calls, args.rate,
                            Path(tmp) / key,
                        )
                        for _, key in PACED
                    }  # fmt: skip
        except PlacementUnavailable as exc:
            print(f"paced runs, placed {placement}: skipped ({exc})", flush=True)
            continue
        runs[placement] = {"where": where, "rows": rows}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap",
        default=Settings().bootstrap_servers,
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else the local "
        "broker of `logflume up`)",
    )
    parser.add_argument("--events", type=int, default=100_000, help="SDK calls per scenario")
    parser.add_argument("--naive-events", type=int, default=5_000, help="naive emitter events")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument(
        "--paced-calls", type=int, default=1_000_000, help="calls per paced run (0: none)"
    )
    parser.add_argument("--rate", type=int, default=50_000, help="calls/s of the paced runs")
    parser.add_argument(
        "--placement",
        choices=("shared", "split", "shared-batch", "both"),
        default="both",
        help="where the paced runs' threads run: shared (the app and the local broker on "
        "every CPU), split (the app on one CPU, the local broker of `logflume up` on the "
        "others, as when the broker is on other machines), or both, one after the other; "
        "shared-batch (shared, the local broker in the batch scheduling class for the run, "
        "so that it cannot preempt the app when it wakes): which slow calls were the broker's",
    )
    parser.add_argument(
        "--ab-rounds",
        type=int,
        default=0,
        help="rounds of the validator comparison (contract only vs mirror first; 0: none)",
    )
    parser.add_argument("--save", type=Path, help="write the results as JSON here")
    parser.add_argument("--baseline", type=Path, help="compare against a saved JSON run")
    args = parser.parse_args()
    # SIGTERM (a timeout, `kill`) runs the cleanups too: a split run moves the broker's CPUs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    topic = asyncio.run(make_topic(args.bootstrap, args.partitions))
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="logflume-sdk-bench-") as tmp:
            gc.collect()
            results["sdk_up"] = sdk_broker_up(args.bootstrap, topic, args.events, Path(tmp) / "a")
            gc.collect()
            results["sdk_down"] = sdk_broker_down(
                args.bootstrap, topic, args.events, Path(tmp) / "b"
            )
        gc.collect()
        results["naive"] = asyncio.run(naive(args.bootstrap, topic, args.naive_events))
        ab_runs: list[dict[str, Any]] = []
        if args.ab_rounds > 0:
            ab_runs = validator_ab(args.bootstrap, topic, args.events, args.ab_rounds)
        paced_runs = run_paced(args, topic) if args.paced_calls > 0 else {}
    finally:
        asyncio.run(drop_topic(args.bootstrap, topic))

    run = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results,
        "paced_placements": paced_runs,
        "validator_ab": ab_runs,
    }
    print_table(results, baseline)
    if ab_runs:
        print_ab(ab_runs)
    for placement, paced_run in paced_runs.items():
        print_paced(placement, paced_run, baseline)
    if args.save:
        args.save.write_text(json.dumps(run, indent=2))
        print(f"saved to {args.save}")


if __name__ == "__main__":
    main()
