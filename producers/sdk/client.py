"""The public client: fire-and-forget emit calls, flush, close, stats.

Every emit call does cheap work on the caller's thread (an id when none is given, the
time, its JSON appended to a bounded deque as one bytes object) and returns at once; it
never blocks on the network, and on the disk only when the queue is full with
``overflow="spool"`` (it then writes its event to the spool itself), and it never raises,
except in strict mode where the event is validated at the call and a
:class:`~producers.contract.ContractError` (a ``ValueError``) names the field. Usable
from plain threads and from inside a running asyncio loop: the sending
happens on the client's own worker thread and loop.

Objects passed in (messages, metadata, completions) are serialized at the call, so the
event is what they held then, whatever the caller does with them afterwards.

The client sends what was queued at interpreter exit (``atexit``, up to
``close_timeout_s``) and spools the rest; a ``multiprocessing`` child, which leaves with
``os._exit``, does the same from multiprocessing's exit hook.

Fork safety: a client created before ``fork()`` (gunicorn ``--preload``, uWSGI, Celery's
prefork pool, ``multiprocessing`` with fork) re-arms itself in the child: a fresh queue,
worker thread, Kafka producer and spool slot of its own. The at-fork hook
(``os.register_at_fork``) only marks the client; the child's first call that needs the
machinery (an emit, or :attr:`Client.spool_slot`) re-arms it. A child that never emits (one
that execs, as ``subprocess`` with ``preexec_fn`` does, or exits at once) claims no spool slot
and touches no other slot's files; its ``flush``, ``close`` and ``stats`` answer for the
nothing it emitted. Events queued before the fork are the parent's, sent once by the
parent; the child drops its copy. The parent's objects that the child inherited are never
closed or used in the child, only kept: closing them would act on what the parent shares
with it (its epoll instance, its sockets' registrations, its spool's locks).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import codec
from typing_extensions import Unpack

from producers.contract import ContractError

from .config import SDKSettings
from .encoding import EventEncoder, Item, item_type, new_id
from .params import FeedbackParams, LogParams, LogUpdateParams, TraceParams
from .queue import EventQueue
from .spool import Spool, SpoolError
from .stats import DropReason, RateLimitedWarner, SDKStats, StatsRecorder
from .tracing import Trace, open_node
from .transport import KafkaTransport, Transport
from .unsaved import UnsavedLogs
from .worker import Worker

__all__ = ["Client"]

log = logging.getLogger(__name__)

_NONE: tuple[str, ...] = ()
_CODECS = {"lz4": codec.has_lz4, "zstd": codec.has_zstd, "gzip": codec.has_gzip}

# Live clients, re-armed in a forked child; and what children inherited from their parent
# (kept, never closed: see the module docstring).
_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()
_INHERITED: list[object] = []
_PROCESS_UTILS = ("multiprocessing.util", "billiard.util")
# Serializes the re-arms of a forked child's threads (replaced in each child: another thread
# may have held the parent's at the fork).
_REARM_LOCK = threading.Lock()


def _mark_forked() -> None:
    """The at-fork hook, in the child: only mark the clients. It runs before an ``exec``
    too (``subprocess`` with ``preexec_fn``), where claiming a spool slot, reading (and
    resetting) other slots' counts or starting a thread would be work for nothing, or harm."""
    global _REARM_LOCK
    _REARM_LOCK = threading.Lock()
    for client in list(_LIVE):
        # Its save=false screen is used before the first emit re-arms (log, update_log): a
        # lock some parent thread held at the fork would hang the child's first such call.
        client._unsaved.after_fork()
        client._forked = True


os.register_at_fork(after_in_child=_mark_forked)


class Client:
    """Fire-and-forget emitter of logflume events.

    ``Client()`` reads :class:`SDKSettings` from the environment; pass ``settings`` or
    keyword overrides (``Client(project="bot", bootstrap_servers="host:9092")``).
    ``transport`` replaces the Kafka transport (tests use the in-memory twin).
    """

    def __init__(
        self,
        settings: SDKSettings | None = None,
        *,
        transport: Transport | None = None,
        **overrides: Any,
    ) -> None:
        if settings is None:
            settings = SDKSettings(**overrides)
        elif overrides:
            settings = SDKSettings.model_validate({**settings.model_dump(), **overrides})
        self.settings = settings
        self._strict = settings.strict
        self._encoder = EventEncoder(
            settings.project,
            max_event_bytes=settings.max_event_bytes,
            fast=settings.fast_validation,
        )
        self._unsaved = UnsavedLogs(settings.unsaved_capacity, settings.unsaved_ttl_s)
        self._given_transport = transport
        self._closed = False
        self._forked = False  # in a forked child, until the first call that needs to re-arm
        self._delivered = False  # what close() found: everything delivered
        self._start()
        atexit.register(self._at_exit)
        _LIVE.add(self)

    def _start(self, *, live: bool = True) -> None:
        """Build and start the machinery: stats, spool slot, queue, transport, worker.
        ``live=False``: the same, already closed, without a spool slot or a thread (a forked
        child closing a client it never used)."""
        settings = self.settings
        self._stats = StatsRecorder()
        self._warner = RateLimitedWarner(settings.warn_interval_s, log)
        self._spool = self._open_spool(settings) if live else None
        self._queue = EventQueue(
            settings.max_queue_events, settings.max_queue_bytes, wake_at=settings.batch_max_events
        )
        transport = self._given_transport
        if transport is None:
            transport = KafkaTransport(settings, compression=self._codec(settings))
        self._worker = Worker(
            settings, self._queue, transport, self._spool, self._encoder, self._stats, self._warner
        )
        if not live:
            self._queue.close()
            self._closed = self._delivered = True  # it accepted nothing: nothing undelivered
            atexit.unregister(self._at_exit)
            return
        self._worker.start()
        self._queue.set_waker(self._worker.wake)

    def _rearm(self, *, live: bool = True) -> None:
        """In a forked child, at the first call that needs the machinery: let go of the
        parent's and build this process's own (see the module docstring). ``live=False``
        (close) or a client closed before the fork: build it closed, claiming no slot."""
        with _REARM_LOCK:
            if not self._forked:
                return  # another thread of the child re-armed it meanwhile
            _INHERITED.append((self._worker, self._queue, self._spool, self._stats))
            self._queue.close()
            self._queue.clear()
            if self._spool is not None:
                self._spool.forget_after_fork()
            live = live and not self._closed
            self._start(live=live)
            if live:
                self._close_at_exit_of_process()
            self._forked = False  # last: other threads wait on the lock until it is built

    def _close_at_exit_of_process(self) -> None:
        # A multiprocessing (or billiard, Celery's) child leaves with os._exit, which skips
        # atexit: close from its exit hook too (close runs once). Its bootstrap clears the
        # exit hooks inherited from the parent, then runs its after-fork callbacks: a re-arm
        # before that (an after-fork callback that emits) registers from one of those.
        for name in _PROCESS_UTILS:
            util = sys.modules.get(name)
            if util is not None:
                util.register_after_fork(self, Client._close_at_process_exit)
                Client._close_at_process_exit(self)

    def _close_at_process_exit(self) -> None:
        for name in _PROCESS_UTILS:
            util = sys.modules.get(name)
            if util is not None:
                util.Finalize(None, self._at_exit, exitpriority=100)

    # -- Humanloop style -------------------------------------------------------------------

    def log(self, **fields: Unpack[LogParams]) -> str:
        """Log one LLM call against a Prompt; returns the log id (``data_<uuid hex>`` when
        ``id`` is not given) at once. With ``save=False`` the payload fields (messages,
        inputs, outputs, provider request and response…) are dropped here, at the call."""
        body: dict[str, Any] = fields  # type: ignore[assignment]
        log_id = body.get("id")
        if log_id is None:
            log_id = body["id"] = new_id("data_")
        self._emit("log", self._unsaved.screen("log", body), _NONE)
        return log_id  # type: ignore[no-any-return]

    def update_log(self, **fields: Unpack[LogUpdateParams]) -> None:
        """Set fields of a log addressed by ``reference_id`` (or by log ``id``). The
        payload fields of an update of a ``save=False`` log this client created are dropped."""
        body: dict[str, Any] = fields  # type: ignore[assignment]
        self._emit("log_update", self._unsaved.screen("log_update", body), _NONE)

    def delete_log(self, *, id: str | None = None, reference_id: str | None = None) -> None:
        """Delete a log: the pipeline removes its row and feedback, corrects its trace,
        session and prompt-version totals and drops its later events. Name it by its
        ``reference_id`` when it has one (its events are routed by it), else by ``id``.
        Events sent before stay in the raw topic until its retention ends."""
        body: dict[str, Any] = {"kind": "log"}
        if id is not None:
            body["id"] = id
        if reference_id is not None:
            body["reference_id"] = reference_id
        self._emit("delete", body, _NONE)

    def feedback(self, **fields: Unpack[FeedbackParams]) -> str:
        """A rating or judgment (``value``) on a log (``log_id`` or ``reference_id``);
        returns the feedback id."""
        body: dict[str, Any] = fields  # type: ignore[assignment]
        feedback_id = body.get("id")
        if feedback_id is None:
            feedback_id = body["id"] = new_id("fbk_")
        self._emit("feedback", body, _NONE)
        return feedback_id  # type: ignore[no-any-return]

    # -- Maxim style -------------------------------------------------------------------------

    def trace(self, **fields: Unpack[TraceParams]) -> Trace:
        """Start a trace; open spans and generations on the returned handle."""
        trace_id = open_node(self, "trace", "trace_", fields)  # type: ignore[arg-type]
        return Trace(self, trace_id, trace_id)

    # -- the hot path ------------------------------------------------------------------------

    def _emit(self, etype: str, body: dict[str, Any], stamp: tuple[str, ...]) -> None:
        if self._forked:
            self._rearm()
        ts = time.time()
        try:
            if self._strict:
                item = self._encoder.pre_encoded_item(self._encoder.encode(etype, ts, body, stamp))
            else:
                item = self._encoder.item(etype, ts, body, stamp)
            if not self._queue.put(item):
                self._overflow(item)
        except ContractError as exc:
            if self._strict:
                raise
            self._worker.reject(etype, exc)
        except Exception as exc:  # never crash the application; the event is lost: count it
            self._stats.drop(DropReason.INVALID)
            self._warner.warn("emit", "logflume: an emit call failed: %s", type(exc).__name__)

    def _overflow(self, item: Item) -> None:
        """The queue is full (or closed). Policy "spool": this caller writes the event to the
        spool itself (the worker is not keeping up); "drop": count it."""
        if self._closed:
            self._stats.drop(DropReason.CLOSED)
            return
        spool = self._spool
        if spool is None:
            self._stats.drop(DropReason.QUEUE_FULL)
            self._warner.warn(
                "queue_full", "logflume: the event queue is full; dropping events (policy drop)"
            )
            return
        try:
            encoded = self._encoder.finish_item(item)
        except ContractError as exc:
            self._worker.reject(item_type(item), exc)
            return
        try:
            written = spool.append([encoded])
        except SpoolError as exc:
            # Written whole before the error (a failed fsync): in the spool, sent from it.
            written = exc.written
            self._warner.warn("spool_error", "logflume: cannot write the spool: %s", exc)
            if not written:
                self._stats.drop(DropReason.SPOOL_ERROR)
                return
        if written:
            self._stats.add(accepted=1, spooled=1)
        else:
            self._stats.drop(DropReason.SPOOL_FULL)

    # -- delivery control ----------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything emitted so far is acknowledged by Kafka or ``timeout``
        seconds passed. From async code use :meth:`aflush`.

        True only if both hold when it returns: nothing this client holds is undelivered (no
        event queued, in flight or in the spool, the spool it took over from earlier
        processes included), and no event was lost since the previous ``flush()`` or
        ``close()`` returned (since the client was created, or re-armed in a forked child,
        for the first): no drop of any reason in ``stats().dropped`` but ``lost_at_exit``
        (events an earlier process lost, counted when this one opened its spool slot), and
        no corrupt spool region (``stats().spool_corrupt``). Spooled is not delivered: with
        the broker away it waits for the spool to drain, and returns False at the timeout.
        After ``close()`` it answers as ``close()`` does."""
        if self._forked:  # a forked child that has emitted nothing: nothing to deliver
            return True
        if self._closed:
            return self._answer(self._delivered)
        return self._answer(self._worker.flush(timeout))

    async def aflush(self, timeout: float = 10.0) -> bool:
        """:meth:`flush` without blocking the running event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Deliver until ``timeout`` (default ``close_timeout_s``), spool what is left, stop
        the worker. Later emits are counted as dropped ("closed").

        True only if everything emitted was acknowledged by Kafka before the deadline (none
        left to spool: spooled is not delivered) and no event was lost since the previous
        ``flush()`` or ``close()`` returned, as :meth:`flush` says. Called again, it answers
        the same about the first close and the events lost since the previous call (an emit
        after close is one)."""
        if self._forked:  # a forked child that has emitted nothing: close without a slot
            self._rearm(live=False)
        if self._closed:
            return self._answer(self._delivered)
        self._closed = True
        self._queue.close()
        atexit.unregister(self._at_exit)
        timeout = self.settings.close_timeout_s if timeout is None else timeout
        self._delivered = self._worker.close(timeout)
        return self._answer(self._delivered)

    def _answer(self, delivered: bool) -> bool:
        """What flush and close return; moves their window of losses (always)."""
        lost = self._stats.losses_since_last_call()
        return delivered and not lost

    async def aclose(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.close, timeout)

    def _at_exit(self) -> None:
        self.close()

    def stats(self) -> SDKStats:
        """Counts of events accepted, sent, spooled and dropped (by reason), and of corrupt
        spool regions skipped (see :class:`SDKStats`)."""
        if self._forked:  # a forked child that has emitted nothing: nothing of its own yet
            return StatsRecorder().snapshot(queued=0, inflight=0, spool_bytes=0)
        spool = self._spool
        return self._stats.snapshot(
            queued=len(self._queue),
            inflight=self._worker.inflight_events,
            spool_bytes=spool.nbytes if spool is not None else 0,
        )

    @property
    def spool_slot(self) -> Path | None:
        """This process's spool folder (``<spool root>/slot-<n>``), None without a spool. In
        a forked child that has not re-armed yet, asking claims the slot (re-arms)."""
        if self._forked:
            self._rearm()
        return self._spool.slot if self._spool is not None else None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- construction helpers ------------------------------------------------------------------

    def _open_spool(self, settings: SDKSettings) -> Spool | None:
        root = settings.resolved_spool_dir()
        if root is None:
            return None
        try:
            spool = Spool(
                root,
                max_bytes=settings.spool_max_bytes,
                segment_bytes=settings.spool_segment_bytes,
                fsync=settings.spool_fsync,
            )
        except OSError as exc:
            # Never crash the application: run without a spool (overflow is then dropped).
            log.warning("logflume: cannot open the spool at %s (%s); running without", root, exc)
            return None
        if spool.lost_by_previous:
            self._stats.drop(DropReason.LOST_AT_EXIT, spool.lost_by_previous)
            log.warning(
                "logflume: a process that used the spool at %s ended without closing its "
                "client; %d events it had accepted were only in its memory and are lost",
                root,
                spool.lost_by_previous,
            )
        return spool

    @staticmethod
    def _codec(settings: SDKSettings) -> str | None:
        name = settings.compression
        if name == "none":
            return None
        if _CODECS[name]():
            return name
        log.warning(
            "logflume: %s compression needs the cramjam package; sending uncompressed", name
        )
        return None
