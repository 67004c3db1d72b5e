"""The durable publishing core the SDK's worker and the gateway's publisher share.

Both keep what Kafka did not acknowledge in a :class:`~producers.sdk.spool.Spool` and send
it again later; this module is that "later":

* :class:`RetryPolicy`: whether the broker is taking sends, and when to try it again (one
  :class:`kernel.backoff.Backoff`, advanced by a failure, reset by a success);
* :class:`SpoolDrain`: re-sends a spool in order. It reads a chunk, sends it, and
  acknowledges it to the spool only once Kafka acknowledged every event of it; events Kafka
  did not acknowledge are sent again after the policy's pause (only those: the acknowledged
  part is not sent twice); events Kafka refused for good (a record too large for the
  broker, any error Kafka marks not retriable) are reported and acknowledged with the
  chunk, never retried; corrupt or torn regions the spool skipped are reported;
* :class:`SendOutcomes`: what the host (the SDK's worker, the gateway's publisher) does with
  those reports: its counters and its warnings.

It runs on the host's event loop: the SDK's worker thread (one per process, rebuilt after a
fork, like the rest of the client: nothing here is global) or the gateway's server. The SDK
reads the spool on its own thread (``read_in_thread=False``): its worker is what reads, and
a thread hop per chunk would only add latency; the gateway reads it in a thread so that the
server's loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from kernel.backoff import Backoff

from .encoding import Encoded
from .spool import Spool, SpoolChunk
from .transport import SendFailure, Transport

__all__ = [
    "SPOOL_READ_BYTES",
    "RetryPolicy",
    "SendOutcomes",
    "SpoolDrain",
    "send_within",
    "settle",
]

log = logging.getLogger(__name__)

SPOOL_READ_BYTES = 4 * 1024 * 1024  # at most this much of the spool per chunk


class RetryPolicy:
    """The broker's health as the sender saw it, and when to try it again.

    :meth:`failed` marks it unhealthy and, unless a pause is already running, starts the next
    pause of the backoff (many sends failing at once, as in-flight sends do when the broker
    goes away, take one step of the backoff, not one each); :meth:`succeeded` makes it
    healthy and resets the backoff.
    """

    __slots__ = ("_backoff", "healthy", "min_pause_s", "retry_at")

    def __init__(self, backoff: Backoff, *, min_pause_s: float = 0.0) -> None:
        self._backoff = backoff
        self.min_pause_s = min_pause_s
        self.healthy = True  # the last send succeeded
        self.retry_at = 0.0  # time.monotonic() at which the current pause ends

    def failed(self) -> None:
        """A send was not acknowledged (the events are kept for a retry)."""
        now = time.monotonic()
        if self.healthy or now >= self.retry_at:
            self.retry_at = now + self._backoff.next()
        self.healthy = False

    def succeeded(self) -> bool:
        """Kafka acknowledged a send; True if the broker had been failing until now."""
        recovered = not self.healthy
        self.healthy = True
        self.retry_at = 0.0
        self._backoff.reset()
        return recovered

    def pausing(self) -> bool:
        """True while the pause after the last failure runs."""
        return time.monotonic() < self.retry_at

    async def pause(self, deadline: float | None = None) -> None:
        """Wait until the pause ends (at least ``min_pause_s``), or until ``deadline``."""
        now = time.monotonic()
        delay = max(self.min_pause_s, self.retry_at - now)
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - now))
        await asyncio.sleep(delay)


class SendOutcomes(Protocol):
    """What the host does with the outcome of a send: count and warn. The drain calls these
    before it tells the :class:`RetryPolicy`, so the policy still holds the state before
    the send (``healthy`` False in :meth:`sent` means the broker just came back)."""

    def sent(self, count: int, *, resent: bool) -> None:
        """``count`` events were acknowledged by Kafka (``resent``: from the spool)."""
        ...

    def rejected(self, events: Sequence[Encoded], reason: str, *, resent: bool) -> None:
        """Kafka refused these for good (``resent``: they leave the spool); count them,
        never log them."""
        ...

    def retrying(self, count: int, reason: str) -> None:
        """``count`` events were not acknowledged; they stay in the spool for a retry."""
        ...

    def corrupt(self, regions: int) -> None:
        """The spool skipped ``regions`` torn or damaged regions (their events are lost)."""
        ...


def settle(
    failure: SendFailure,
    total: int,
    outcomes: SendOutcomes,
    policy: RetryPolicy,
    *,
    resent: bool,
) -> None:
    """Report a send of ``total`` events that failed in part: what Kafka acknowledged, what
    it refused for good, what is to be sent again (``failure.retry``, which the caller
    keeps); events to retry are a fault for the policy. A failure with nothing to retry
    leaves the policy as it was: an error aiokafka marks not retriable may still come from
    a broker that is away (``KafkaTimeoutError`` did, until the transport retried it), and
    it must not make a failing broker look healthy again."""
    acked = total - len(failure.retry) - len(failure.rejected)
    if acked:
        outcomes.sent(acked, resent=resent)
    if failure.rejected:
        outcomes.rejected(failure.rejected, failure.reason, resent=resent)
    if failure.retry:
        outcomes.retrying(len(failure.retry), failure.reason)
        policy.failed()


async def send_within(
    transport: Transport, events: Sequence[Encoded], timeout_s: float | None
) -> None:
    """``transport.send`` with a time limit: a send that takes longer fails (retriable).

    The send runs in the caller's task (``asyncio.timeout``), not in a task of its own
    (``asyncio.wait_for`` on Python 3.11): a caller cancelled while its send was failing
    (a client closing with the broker down) left that inner task's ``SendFailure``
    unretrieved, and asyncio printed its traceback ("Task exception was never retrieved")."""
    if timeout_s is None:
        await transport.send(events)
        return
    try:
        async with asyncio.timeout(timeout_s):
            await transport.send(events)
    except TimeoutError:
        raise SendFailure("timed out", events) from None


class SpoolDrain:
    """Re-sends a spool in order; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        policy: RetryPolicy,
        outcomes: SendOutcomes,
        *,
        max_events: int,
        max_bytes: int = SPOOL_READ_BYTES,
        send_timeout_s: float | None = None,
        read_in_thread: bool = False,
    ) -> None:
        self.spool = spool
        self._transport = transport
        self._policy = policy
        self._outcomes = outcomes
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._send_timeout_s = send_timeout_s
        self._read_in_thread = read_in_thread

    async def run(self, deadline: Callable[[], float | None] | None = None) -> bool:
        """Send the spool until nothing is left unsent (True) or ``deadline()`` passed
        (False). Between failed tries it waits the policy's pause."""
        spool = self.spool
        spool.rewind()  # from the first event not acknowledged yet
        chunk: SpoolChunk | None = None
        while True:
            until = deadline() if deadline is not None else None
            if until is not None and time.monotonic() >= until:
                return False
            if chunk is None:
                chunk = await self._read()
                if chunk.corrupt_regions:
                    self._outcomes.corrupt(chunk.corrupt_regions)
                if not chunk.events:
                    spool.ack(chunk)
                    return True
            retry = await self._send(chunk.events)
            if retry:
                chunk.events = retry
                await self._policy.pause(deadline() if deadline is not None else None)
                continue
            spool.ack(chunk)
            chunk = None

    async def _read(self) -> SpoolChunk:
        if self._read_in_thread:
            return await asyncio.to_thread(self.spool.read, self._max_events, self._max_bytes)
        return self.spool.read(self._max_events, self._max_bytes)

    async def _send(self, events: list[Encoded]) -> list[Encoded]:
        """Send the events once; the ones to send again (empty: the chunk is done)."""
        outcomes, policy = self._outcomes, self._policy
        try:
            await send_within(self._transport, events, self._send_timeout_s)
        except SendFailure as failure:
            settle(failure, len(events), outcomes, policy, resent=True)
            return failure.retry
        except Exception as exc:  # a transport bug must not end the drain: retry it all
            log.debug("the transport failed re-sending the spool", exc_info=True)
            outcomes.retrying(len(events), type(exc).__name__)
            policy.failed()
            return events
        outcomes.sent(len(events), resent=True)
        policy.succeeded()
        return []
