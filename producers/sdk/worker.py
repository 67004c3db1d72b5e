"""The background sender: one thread running its own asyncio loop.

Every ``flush_interval_ms`` (or when the queue reaches a batch) it takes what the callers
queued, encodes and validates it (rejections counted and warned), and routes each batch:

* direct: the broker is healthy (its last send succeeded) and the bytes in flight are
  under ``max_inflight_bytes``: ``transport.send`` in a task of its own, so several
  batches are in flight at once and aiokafka's linger merges them;
* spool (overflow "spool"): otherwise (broker failing or slow) the batch is appended to
  the disk spool, and one drain task re-sends the spool in order (read, send, ack, next),
  with a capped, jittered backoff while the broker is away (:mod:`.drain`, shared with the
  gateway's publisher). Direct sends resume as soon as a send succeeds, alongside the drain;
* memory (overflow "drop"): otherwise the batch waits in memory; the worker stops taking
  from the queue while memory is full, so the callers' queue overflows and counts drops.

A failed send puts its unacknowledged events back (spool or memory); events the broker
rejected for good are counted. The loop never dies: an unexpected error is logged
(rate-limited) and the next cycle runs. ``close`` works to a deadline and then spools
what is left (or counts it as dropped, without a spool).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any

from kernel.backoff import Backoff
from producers.contract import ContractError

from .config import SDKSettings
from .drain import RetryPolicy, SpoolDrain, send_within, settle
from .encoding import Encoded, EncodedBatch, EventEncoder, Item, item_type
from .queue import EventQueue
from .spool import Spool, SpoolError, encode_frames
from .stats import DropReason, RateLimitedWarner, StatsRecorder
from .transport import SendFailure, Transport

__all__ = ["Worker", "lower_thread_priority"]

log = logging.getLogger(__name__)


def lower_thread_priority(increment: int) -> None:
    """Make the calling thread ``increment`` nicer and put it in the batch scheduling class
    (Linux, where both are per thread; a thread starts with its creator's). Lowering one's
    own priority needs no privilege. ``increment`` 0: the thread is left as it is.

    Why (``bench/sdk_bench.py``, which reads the caller's and the worker's schedstat around
    every burst of paced calls): the calls over 1 ms were the OS handing the caller's CPU to
    this thread. Nicer (stop 38), the worker gets less of a CPU both want; with the broker
    down it still took the caller's CPU for 1.6-6 ms in 2 runs of 4 (woken while the caller
    ran, it preempted it, then wrote a batch to the spool). ``SCHED_BATCH`` tells the
    scheduler the thread is throughput work: it never preempts a running thread when it
    wakes, and it keeps its nice value and share of the CPU (unlike ``SCHED_IDLE``, which
    would starve the sends of an app that keeps its CPUs busy): 0 of 4 such runs after."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except OSError as exc:  # a sandbox that forbids it: run at the app's priority
        log.debug("logflume: worker priority unchanged (%s)", exc)
    try:
        if os.sched_getscheduler(tid) == os.SCHED_OTHER:  # never a real-time app's thread
            os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError) as exc:  # musl: ENOSYS; elsewhere no such function
        log.debug("logflume: worker scheduling class unchanged (%s)", exc)


_CLOSING_TICK_S = 0.005
_BACKOFF_START_S = 0.1
# Events validated per hold of the GIL (~1 ms of work), then the worker lets go of it.
_ENCODE_SLICE = 128


class Worker:
    """Owns the transport and the spool; talks to callers only through the queue."""

    def __init__(
        self,
        settings: SDKSettings,
        queue: EventQueue,
        transport: Transport,
        spool: Spool | None,
        encoder: EventEncoder,
        stats: StatsRecorder,
        warner: RateLimitedWarner,
    ) -> None:
        self._s = settings
        self._queue = queue
        self._transport = transport
        self._spool = spool
        self._encoder = encoder
        self._stats = stats
        self._warner = warner
        self._memory_only = spool is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logflume-sdk-worker", daemon=True)
        # Direct sends in flight, each with its batch: a send cancelled at close before it
        # ever ran never reaches its own handler, so close settles its batch from here.
        self._tasks: dict[asyncio.Task[None], EncodedBatch] = {}
        self._drain: asyncio.Task[None] | None = None
        self._pending: deque[EncodedBatch] = deque()
        self._pending_bytes = 0
        self._keep_lock = asyncio.Lock()  # spool writes of the worker's loop, in turn
        self.inflight_events = 0
        self._encoding = 0  # events taken from the queue and being validated
        self._inflight_bytes = 0
        # Full jitter: many processes of one app retrying a broker that came back spread out.
        self._retry = RetryPolicy(Backoff(_BACKOFF_START_S, settings.retry_backoff_max_s))
        self._spool_drain: SpoolDrain | None = None
        if spool is not None:
            self._spool_drain = SpoolDrain(
                spool,
                transport,
                self._retry,
                self,
                max_events=settings.batch_max_events,
                send_timeout_s=settings.send_timeout_s,
            )
        self._close_deadline: float | None = None
        self.delivered_all = False

    # -- life cycle (callers' threads) -----------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def wake(self) -> None:
        """Thread-safe nudge: run a cycle now rather than at the next interval."""
        loop, event = self._loop, self._wake_event
        if loop is None or event is None:
            return
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed: the client was closed
            pass

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued so far was acknowledged by Kafka (True), or not."""
        deadline = time.monotonic() + timeout_s
        future = self._submit(self._until_idle(deadline))
        if future is None:
            return False
        try:
            return future.result(timeout=max(0.0, timeout_s) + 1.0)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return False

    def close(self, timeout_s: float) -> bool:
        """Deliver what can be until the deadline, spool the rest, stop; True if all sent."""
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            deadline = time.monotonic() + timeout_s
            try:
                loop.call_soon_threadsafe(self._request_close, deadline)
            except RuntimeError:
                pass
            self._thread.join(timeout_s + self._s.send_timeout_s + 5.0)
        return self.delivered_all

    def _submit(self, coro: Coroutine[Any, Any, bool]) -> concurrent.futures.Future[bool] | None:
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            try:
                return asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:  # the loop closed meanwhile
                pass
        coro.close()
        return None

    def _request_close(self, deadline: float) -> None:
        self._close_deadline = deadline
        if self._wake_event is not None:
            self._wake_event.set()

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        lower_thread_priority(self._s.worker_nice)
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        self._wake_event = asyncio.Event()
        self._ready.set()
        interval = self._s.flush_interval_ms / 1000
        while True:
            closing = self._close_deadline is not None
            try:
                await asyncio.wait_for(
                    self._wake_event.wait(), _CLOSING_TICK_S if closing else interval
                )
            except TimeoutError:
                pass
            self._wake_event.clear()
            try:
                await self._cycle()
                if self._spool is not None:
                    self._spool.mark_unsent(
                        len(self._queue) + self._encoding + self.inflight_events
                    )
            except Exception as exc:  # the loop never dies
                self._warner.warn("worker", "logflume: SDK worker error: %s", type(exc).__name__)
                log.debug("SDK worker error", exc_info=True)
            if self._close_deadline is not None:
                if self._idle() or time.monotonic() >= self._close_deadline:
                    break
        await self._finish()

    async def _cycle(self) -> None:
        max_batch = self._s.batch_max_events
        budget = len(self._queue)  # what was queued when the cycle began: the cycle ends
        while budget > 0:
            if self._memory_only and self._memory_full():
                break  # stop taking: the callers' queue overflows and counts drops
            items = self._queue.drain(min(max_batch, budget))
            if not items:
                break
            budget -= len(items)
            batch = EncodedBatch()
            self._encoding = len(items)  # taken from the queue, not yet routed: not idle
            try:
                for start in range(0, len(items), _ENCODE_SLICE):
                    self._encode(items[start : start + _ENCODE_SLICE], batch)
                    # A pass of the loop (its select releases the GIL): an application
                    # thread waiting for the GIL gets it now, not after the 5 ms switch
                    # interval.
                    await asyncio.sleep(0)
                if batch:
                    await self._route(batch)
            finally:
                self._encoding = 0
        if self._drain is None and (
            self._pending or (self._spool is not None and self._spool.has_unsent())
        ):
            self._drain = asyncio.get_running_loop().create_task(self._drain_backlog())

    def _idle(self) -> bool:
        return (
            not len(self._queue)
            and not self._encoding
            and not self._tasks
            and not self._pending
            and self._drain is None
            and (self._spool is None or not self._spool.has_unsent())
        )

    async def _until_idle(self, deadline: float) -> bool:
        while True:
            if self._wake_event is not None:
                self._wake_event.set()
            await asyncio.sleep(_CLOSING_TICK_S)
            if self._idle():
                return True
            if time.monotonic() >= deadline:
                return False

    # -- encoding and routing --------------------------------------------------------------

    def _encode(self, items: list[Item], into: EncodedBatch) -> None:
        """Validate and encode ``items``, appended to ``into``."""
        keys, values = into.keys, into.values
        before = len(values)
        finish = self._encoder.finish_item
        nbytes = 0
        for item in items:
            try:
                key, data = finish(item)
            except ContractError as exc:
                self.reject(item_type(item), exc)
                continue
            keys.append(key)
            values.append(data)
            nbytes += len(data)
        # Accepted: the events this client is now to deliver. One the contract refused is
        # counted as dropped ("invalid") only, as when the caller's own check refuses it.
        accepted = len(values) - before
        self._stats.add(accepted=accepted)
        self._queue.observe(nbytes, accepted)

    def reject(self, etype: str, exc: ContractError, *, detail: str = "") -> None:
        """Count an invalid event and warn (rate-limited) naming the fields, never values."""
        fields = exc.fields or ("body",)
        self._stats.invalid(fields)
        reasons = "; ".join(str(e) for e in exc.errors) or f"could not be serialized ({detail})"
        self._warner.warn(
            f"invalid:{etype}:{','.join(fields)}",
            "logflume: dropped an invalid %s event (%s): %s",
            etype,
            ", ".join(fields),
            reasons,
        )

    async def _route(self, batch: EncodedBatch) -> None:
        nbytes = batch.nbytes()
        room = self._inflight_bytes + nbytes <= self._s.max_inflight_bytes or not self._tasks
        # Without a spool, memory keeps the order: nothing overtakes the backlog. With one,
        # a healthy broker gets new batches directly while the drain re-sends the spool in
        # its own order (the processors' merge does not depend on arrival order).
        backlog = self._spool is None and (bool(self._pending) or self._drain is not None)
        # Unhealthy with nothing to drain (the spool refused the events): one batch at a
        # time goes out directly as a probe, so a recovered broker is noticed.
        healthy = self._retry.healthy
        probe = not healthy and self._drain is None and not self._tasks
        if (healthy or probe) and room and not backlog:
            self._start_send(batch, nbytes)
        else:
            await self._keep_sliced(batch)

    async def _keep_sliced(self, events: Sequence[Encoded]) -> None:
        """:meth:`_keep`, the spool's frames encoded a slice at a time with a pass of the
        loop between slices: encoding a whole batch for the spool held the GIL for 1-3 ms,
        which an app thread coming back from I/O or a sleep waited out. Written at once,
        and in the order the batches got here (a lock, first come first served: a small
        batch does not overtake a large one still being encoded)."""
        if self._spool is None:
            self._keep(events)
            return
        try:
            async with self._keep_lock:
                frames: list[bytes] = []
                for start in range(0, len(events), _ENCODE_SLICE):
                    if start:
                        await asyncio.sleep(0)
                    frames += encode_frames(events[start : start + _ENCODE_SLICE])
                self._keep(events, frames)
        except asyncio.CancelledError:  # the client is closing: spooled all the same
            self._keep(events)
            raise

    def _keep(self, events: Sequence[Encoded], frames: list[bytes] | None = None) -> None:
        """Events that cannot be sent now: to the spool (``frames``: their spool frames, if
        encoded already), or to memory without one."""
        if not events:
            return
        if self._spool is None:
            batch = EncodedBatch.of(events)
            self._pending.append(batch)
            self._pending_bytes += batch.nbytes()
            return
        failed = 0
        try:
            written = self._spool.append(events, frames=frames)
        except SpoolError as exc:
            # The events written whole before the error stay in the spool and are sent from
            # it like the others: spooled, not dropped. Only the rest of the write is lost.
            written, failed = exc.written, exc.tried - exc.written
            self._warner.warn("spool_error", "logflume: cannot write the spool: %s", exc)
        self._stats.add(spooled=written)
        if failed:
            self._stats.drop(DropReason.SPOOL_ERROR, failed)
        unfit = len(events) - written - failed
        if unfit:
            self._stats.drop(DropReason.SPOOL_FULL, unfit)
            self._warner.warn(
                "spool_full",
                "logflume: the spool is full (%d bytes); dropping events",
                self._s.spool_max_bytes,
            )

    def _memory_full(self) -> bool:
        return self._inflight_bytes + self._pending_bytes >= self._s.max_inflight_bytes

    # -- sending ---------------------------------------------------------------------------

    def _start_send(self, batch: EncodedBatch, nbytes: int) -> None:
        self._inflight_bytes += nbytes
        self.inflight_events += len(batch)
        task = asyncio.get_running_loop().create_task(self._send(batch, nbytes))
        self._tasks[task] = batch

    async def _send(self, batch: EncodedBatch, nbytes: int) -> None:
        task = asyncio.current_task()
        try:
            await send_within(self._transport, batch, self._s.send_timeout_s)
        except SendFailure as failure:
            settle(failure, len(batch), self, self._retry, resent=False)
            await self._keep_sliced(failure.retry)
        except asyncio.CancelledError:
            self._keep_at_close(batch)
            raise
        except Exception as exc:
            self._warner.warn("transport", "logflume: the transport failed: %s", type(exc).__name__)
            log.debug("transport failure", exc_info=True)
            self._retry.failed()
            await self._keep_sliced(batch)
        else:
            self._delivered(len(batch), resent=False)
        finally:
            self._inflight_bytes -= nbytes
            self.inflight_events -= len(batch)
            if task is not None:
                self._tasks.pop(task, None)

    async def _drain_backlog(self) -> None:
        """Re-send the spool (or, without one, the memory backlog) in order."""
        try:
            if self._spool_drain is not None:
                await self._spool_drain.run(self._closing_at)
            else:
                await self._drain_memory()
        finally:
            self._drain = None

    def _closing_at(self) -> float | None:
        return self._close_deadline

    async def _drain_memory(self) -> None:
        while self._pending:
            batch = self._pending[0]
            try:
                await send_within(self._transport, batch, self._s.send_timeout_s)
            except SendFailure as failure:
                settle(failure, len(batch), self, self._retry, resent=True)
                if failure.retry:
                    retry = EncodedBatch.of(failure.retry)
                    self._pending_bytes -= batch.nbytes() - retry.nbytes()
                    self._pending[0] = retry
                    if self._close_deadline is not None:
                        return
                    await self._retry.pause(self._close_deadline)
                    continue
            else:
                self._delivered(len(batch), resent=True)
            self._pending.popleft()
            self._pending_bytes -= batch.nbytes()

    def _delivered(self, count: int, *, resent: bool) -> None:
        self.sent(count, resent=resent)
        self._retry.succeeded()

    # -- what sends did (also reported by the spool's drain: drain.SendOutcomes) -----------

    def sent(self, count: int, *, resent: bool) -> None:
        self._stats.add(sent=count, resent=count if resent and self._spool is not None else 0)

    def rejected(self, events: Sequence[Encoded], reason: str, *, resent: bool) -> None:
        self._stats.drop(DropReason.REJECTED_BY_BROKER, len(events))
        self._warner.warn("rejected", "logflume: Kafka rejected events for good: %s", reason)

    def retrying(self, count: int, reason: str) -> None:
        self._warner.warn(
            "send_failed",
            "logflume: sending to Kafka failed (%s); keeping events %s",
            reason,
            "in memory" if self._spool is None else "in the spool",
        )

    def corrupt(self, regions: int) -> None:
        self._stats.corrupt(regions)

    # -- closing ---------------------------------------------------------------------------

    def _keep_at_close(self, events: Sequence[Encoded]) -> None:
        if self._spool is not None:
            self._keep(events)
        else:
            self._stats.drop(DropReason.UNSENT_AT_CLOSE, len(events))

    async def _finish(self) -> None:
        self.delivered_all = self._idle()
        leftovers = self._queue.drain(len(self._queue) + 1_000_000)
        if leftovers:
            batch = EncodedBatch()
            self._encode(leftovers, batch)
            self._keep_at_close(batch)
        running = [*self._tasks, *([self._drain] if self._drain else [])]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        # A send cancelled before its first step never ran its handler: its batch is still
        # here, neither sent nor kept. Keep it (spool) or count it, as the handler would.
        for batch in self._tasks.values():
            self.inflight_events -= len(batch)
            self._inflight_bytes -= batch.nbytes()
            self._keep_at_close(batch)
        self._tasks.clear()
        if self._pending:
            self._stats.drop(DropReason.UNSENT_AT_CLOSE, sum(len(b) for b in self._pending))
            self._pending.clear()
            self._pending_bytes = 0
        try:
            await asyncio.wait_for(self._transport.close(), 2.0)
        except Exception:
            log.debug("closing the transport failed", exc_info=True)
        if self._spool is not None:
            self._spool.close()
