"""Publishing accepted events: a 2xx only once Kafka acknowledged them or the spool has them
on disk (fsynced), so an event the gateway accepted is never lost.

Requests hand their encoded events to :meth:`Publisher.publish` and wait. A flusher task
takes whatever requests arrived within ``linger`` and sends their events together through
the SDK's :class:`~producers.sdk.KafkaTransport` (records packed per partition, as every
producer of the pipeline does; idempotent producer, ``acks=all``), so many small requests
still make few, well-filled records. Up to ``max_inflight`` sends run at once.

When Kafka fails (a :class:`~producers.sdk.SendFailure` names the events not
acknowledged), those events are appended to the SDK's crash-safe :class:`~producers.sdk.Spool`
(``fsync`` per append) and their requests are answered as spooled; for a short, growing
backoff the next requests go to the spool at once instead of waiting on a broker that is
away. A drainer task re-sends the spool in order with the SDK's own drain
(:class:`~producers.sdk.drain.SpoolDrain`: a chunk is acknowledged only after Kafka did;
events Kafka refuses for good are counted in :attr:`PublisherStats.rejected_from_spool`,
warned and leave the spool, never retried; torn or corrupt spool regions are skipped and
counted in :attr:`PublisherStats.spool_corrupt`). Without a spool, or when the spool is full
or the disk refuses, the request fails with 503 and the caller retries (the SDKs do).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from kernel.backoff import Backoff
from producers.sdk import SendFailure, Spool, Transport
from producers.sdk.drain import RetryPolicy, SpoolDrain, send_within, settle
from producers.sdk.encoding import Encoded
from producers.sdk.spool import SpoolError

from .errors import PayloadTooLarge, Unavailable

__all__ = ["Delivery", "Publisher", "PublisherStats"]

log = logging.getLogger(__name__)

Delivery = Literal["sent", "spooled"]
_BACKOFF_START_S = 0.2
_SPOOL_READ_EVENTS = 2000
_DRAIN_MIN_PAUSE_S = 0.05


@dataclass(slots=True)
class PublisherStats:
    sent: int = 0
    spooled: int = 0
    resent: int = 0
    refused: int = 0
    send_failures: int = 0
    # Spooled (answered 2xx) and then refused by Kafka for good: lost, counted, warned.
    rejected_from_spool: int = 0
    spool_corrupt: int = 0  # torn or damaged spool regions skipped (their events are lost)


@dataclass(slots=True, eq=False)
class _Request:
    events: Sequence[Encoded]
    future: asyncio.Future[Delivery]


class Publisher:
    """Coalesces requests' events into sends; spools what Kafka does not acknowledge."""

    def __init__(
        self,
        transport: Transport,
        spool: Spool | None,
        *,
        linger_s: float = 0.001,
        max_events: int = 5000,
        max_inflight: int = 4,
        send_timeout_s: float = 5.0,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._transport = transport
        self._spool = spool
        self._linger_s = linger_s
        self._max_events = max_events
        self._send_timeout_s = send_timeout_s
        # No jitter: one gateway, and while the pause runs requests go to the spool at once.
        self._retry = RetryPolicy(
            Backoff(_BACKOFF_START_S, backoff_max_s, jitter=0.0), min_pause_s=_DRAIN_MIN_PAUSE_S
        )
        self._drain: SpoolDrain | None = None
        if spool is not None:
            self._drain = SpoolDrain(
                spool,
                transport,
                self._retry,
                self,
                max_events=_SPOOL_READ_EVENTS,
                send_timeout_s=send_timeout_s * 2,
                read_in_thread=True,
            )
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._spooled = asyncio.Event()
        self._slots = asyncio.Semaphore(max_inflight)
        self._sends: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.stats = PublisherStats()

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._flusher()), loop.create_task(self._drainer())]
        if self._spool is not None and self._spool.has_unsent():
            self._spooled.set()  # what an earlier process left: send it first

    async def close(self, timeout_s: float = 10.0) -> None:
        """Answer what is queued (sent or spooled), stop the tasks, release the transport."""
        self._closing = True
        self._wake.set()
        self._spooled.set()
        deadline = time.monotonic() + timeout_s
        while (self._queue or self._sends) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # the flusher empties the queue; sends finish on their own
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._sends, return_exceptions=True)
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(Unavailable("the gateway is shutting down"))
        self._queue.clear()
        try:
            await asyncio.wait_for(self._transport.close(), 5.0)
        except Exception:
            log.debug("closing the transport failed", exc_info=True)
        if self._spool is not None:
            self._spool.close()

    @property
    def healthy(self) -> bool:
        """False while the pause after a failed send runs (requests go to the spool)."""
        return not self._retry.pausing()

    # -- the request side ------------------------------------------------------------------

    async def publish(self, events: Sequence[Encoded]) -> Delivery:
        """Wait until ``events`` are acknowledged by Kafka or durably spooled.

        Raises :class:`~gateway.errors.Unavailable` (503) when neither happened and
        :class:`~gateway.errors.PayloadTooLarge` when Kafka refused them for good.
        """
        if not events:
            return "sent"
        if self._closing:
            raise Unavailable("the gateway is shutting down")
        request = _Request(events, asyncio.get_running_loop().create_future())
        self._queue.append(request)
        self._wake.set()
        return await asyncio.shield(request.future)

    # -- the flusher -----------------------------------------------------------------------

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            if self._linger_s and not self._closing:
                await asyncio.sleep(self._linger_s)
            self._wake.clear()
            while self._queue:
                batch = self._take()
                await self._slots.acquire()
                task = asyncio.get_running_loop().create_task(self._deliver(batch))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

    def _take(self) -> list[_Request]:
        taken: list[_Request] = []
        count = 0
        while self._queue and (not taken or count + len(self._queue[0].events) <= self._max_events):
            request = self._queue.pop(0)
            taken.append(request)
            count += len(request.events)
        return taken

    async def _deliver(self, batch: list[_Request]) -> None:
        try:
            events = [event for request in batch for event in request.events]
            if self.healthy or self._spool is None:
                await self._send(batch, events)
            else:
                await self._to_spool(batch, events)
        except Exception as exc:  # never leave a request waiting
            log.warning("publishing failed: %s", type(exc).__name__)
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(Unavailable("publishing failed"))
        finally:
            self._slots.release()

    async def _send(self, batch: list[_Request], events: list[Encoded]) -> None:
        try:
            await send_within(self._transport, events, self._send_timeout_s * 2)
        except SendFailure as failure:
            settle(failure, len(events), self, self._retry, resent=False)
            await self._settle_failure(batch, failure.retry, failure.rejected, failure.reason)
            return
        self.sent(len(events), resent=False)
        self._retry.succeeded()
        for request in batch:
            _resolve(request, "sent")

    async def _settle_failure(
        self,
        batch: list[_Request],
        retry: Sequence[Encoded],
        rejected: Sequence[Encoded],
        reason: str,
    ) -> None:
        refused = _identities(rejected)
        unsent = _identities(retry)
        if not refused | unsent <= _identities(e for r in batch for e in r.events):
            # A transport that handed back other objects than it was given (the Transport
            # protocol says it must not): whose events failed is unknown, so no request of
            # the batch is answered as sent; each client sends its request again.
            for request in batch:
                _fail(request, Unavailable("publishing failed"))
            return
        spooled = await self._spool_events(retry)
        for request in batch:
            ids = _identities(request.events)
            if ids & refused:
                _fail(request, _refusal(reason))
            elif ids & unsent and not ids & unsent <= spooled:
                _fail(request, Unavailable("Kafka is unavailable and the spool is full"))
            else:
                _resolve(request, "spooled" if ids & unsent else "sent")

    async def _to_spool(self, batch: list[_Request], events: list[Encoded]) -> None:
        spooled = await self._spool_events(events)
        for request in batch:
            if _identities(request.events) <= spooled:
                _resolve(request, "spooled")
            else:
                _fail(request, Unavailable("Kafka is unavailable and the spool is full"))

    async def _spool_events(self, events: Sequence[Encoded]) -> set[int]:
        """Append to the spool (fsync, in a thread); the ids of the events written."""
        spool = self._spool
        if spool is None or not events:
            return set()
        try:
            written = await asyncio.to_thread(spool.append, events)
        except SpoolError as exc:
            # Those written whole before the error stay in the spool and will be sent: their
            # requests are answered as spooled, so that a client does not send them again.
            log.warning("cannot write the spool: %s", exc)
            written = exc.written
        self.stats.spooled += written
        if written:
            self._spooled.set()
        return _identities(events[:written])

    # -- the drainer -----------------------------------------------------------------------

    async def _drainer(self) -> None:
        drain = self._drain
        if drain is None:
            return
        while True:
            await self._spooled.wait()
            self._spooled.clear()
            await drain.run()  # until nothing is unsent; an append meanwhile sets _spooled

    # -- what sends did (drain.SendOutcomes, reported by the drain) ------------------------

    def sent(self, count: int, *, resent: bool) -> None:
        if not resent:
            self.stats.sent += count
            return
        self.stats.resent += count
        if not self._retry.healthy:
            log.warning("Kafka is back; the spool is being drained")

    def rejected(self, events: Sequence[Encoded], reason: str, *, resent: bool) -> None:
        if not resent:
            self.stats.refused += len(events)  # their requests are answered 413 or 503
            return
        self.stats.rejected_from_spool += len(events)
        log.warning("Kafka refused %d spooled events for good (%s); dropped", len(events), reason)

    def retrying(self, count: int, reason: str) -> None:
        self.stats.send_failures += 1
        if not self._retry.pausing():  # once per pause of the backoff, not once per send
            log.warning("sending to Kafka failed (%s); spooling", reason)

    def corrupt(self, regions: int) -> None:
        self.stats.spool_corrupt += regions


def _refusal(reason: str) -> Exception:
    if "TooLarge" in reason:
        return PayloadTooLarge(f"Kafka refused the record: {reason}")
    return Unavailable(f"Kafka refused the events: {reason}")


def _resolve(request: _Request, delivery: Delivery) -> None:
    if not request.future.done():
        request.future.set_result(delivery)


def _fail(request: _Request, exc: Exception) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


def _identities(events: Iterable[Encoded]) -> set[int]:
    """Which events these are, by the identity of their bytes: a transport's failure hands
    back the very bytes objects it was given, but not always the same ``(key, value)``
    pairs (it holds a batch as two lists: :class:`producers.sdk.encoding.EncodedBatch`)."""
    return {id(data) for _, data in events}
