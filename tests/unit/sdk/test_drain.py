"""The durable publishing core shared by the SDK's worker and the gateway's publisher: the
retry policy and the spool's drain, against in-memory transports (no network)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kernel.backoff import Backoff
from producers.sdk import MemoryTransport, SendFailure, Spool
from producers.sdk.drain import RetryPolicy, SpoolDrain, send_within, settle
from producers.sdk.encoding import Encoded


@dataclass
class Outcomes:
    sent: int = 0
    rejected: int = 0
    retries: list[int] = field(default_factory=list)
    corrupt_regions: int = 0


class Recorder:
    """drain.SendOutcomes that only counts."""

    def __init__(self) -> None:
        self.counts = Outcomes()

    def sent(self, count: int, *, resent: bool) -> None:
        assert resent
        self.counts.sent += count

    def rejected(self, events: Sequence[Encoded], reason: str, *, resent: bool) -> None:
        self.counts.rejected += len(events)

    def retrying(self, count: int, reason: str) -> None:
        self.counts.retries.append(count)

    def corrupt(self, regions: int) -> None:
        self.counts.corrupt_regions += regions


class HalfThenAll(MemoryTransport):
    """The first send acknowledges its first half only (retriable failure of the rest);
    the second raises an unexpected error; then every send succeeds."""

    def __init__(self) -> None:
        super().__init__(partitions=1)
        self.given: list[list[Encoded]] = []

    async def send(self, events: Sequence[Encoded]) -> None:
        self.given.append(list(events))
        if len(self.given) == 1:
            half = len(events) // 2
            await super().send(events[:half])
            raise SendFailure("NotLeaderForPartitionError", events[half:])
        if len(self.given) == 2:
            raise RuntimeError("a bug in a transport")
        await super().send(events)


def _events(n: int) -> list[Encoded]:
    return [(b"k", b'{"event_id":"e%d"}' % i) for i in range(n)]


def test_failures_at_once_take_one_step_of_the_backoff_and_a_success_resets_it() -> None:
    policy = RetryPolicy(Backoff(10.0, 60.0, jitter=0.0))
    for _ in range(4):  # four sends in flight fail together
        policy.failed()
    assert not policy.healthy and policy.pausing()
    assert 9.0 < policy.retry_at - time.monotonic() <= 10.0  # one step, not four
    assert policy.succeeded() is True
    assert policy.healthy and not policy.pausing() and policy.succeeded() is False
    policy.failed()
    assert policy.retry_at - time.monotonic() <= 10.0  # reset: the first step


async def test_the_drain_resends_only_what_was_not_acknowledged_and_survives_a_bug(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 16, fsync="never")
    spool.append(_events(10))
    transport = HalfThenAll()
    outcomes = Recorder()
    drain = SpoolDrain(
        spool, transport, RetryPolicy(Backoff(0.001, 0.01)), outcomes, max_events=100
    )
    assert await asyncio.wait_for(drain.run(), 5) is True
    assert [len(batch) for batch in transport.given] == [10, 5, 5]
    assert transport.event_ids() == [f"e{i}" for i in range(10)]  # in order, each once
    assert outcomes.counts.sent == 10 and outcomes.counts.retries == [5, 5]
    assert not spool.has_unsent()
    spool.close()


async def test_the_drain_stops_at_its_deadline_and_keeps_the_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 16, fsync="never")
    spool.append(_events(3))
    transport = MemoryTransport(down=True)
    policy = RetryPolicy(Backoff(0.01, 0.02))
    drain = SpoolDrain(spool, transport, policy, Recorder(), max_events=100)
    stop_at = time.monotonic() + 0.1
    assert await asyncio.wait_for(drain.run(lambda: stop_at), 5) is False
    assert spool.has_unsent() and not policy.healthy
    spool.close()


def test_refusals_alone_do_not_make_a_failing_broker_look_healthy() -> None:
    # An error aiokafka marks not retriable may come from a broker that is away (its
    # KafkaTimeoutError did): if refusals made the policy healthy again, the SDK would send
    # straight to a dead broker instead of spooling (a 30 s outage lost 25,090 of 81,100).
    policy = RetryPolicy(Backoff(0.1, 1.0))
    outcomes = Recorder()
    events = _events(4)
    policy.failed()
    settle(SendFailure("KafkaTimeoutError", (), events[:2]), 4, outcomes, policy, resent=True)
    assert not policy.healthy
    assert outcomes.counts.sent == 2 and outcomes.counts.rejected == 2
    assert outcomes.counts.retries == []


class _FailsWhenCancelled:
    """A transport whose send, once cancelled, fails instead (what the Kafka transport did
    when the client closed while it was stopping a producer that could not connect)."""

    async def send(self, events: Sequence[Encoded]) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise SendFailure("cannot connect", events) from None

    async def close(self) -> None:
        return None


async def test_a_send_cancelled_while_failing_leaves_no_unretrieved_error() -> None:
    reported: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        sending = asyncio.ensure_future(
            send_within(_FailsWhenCancelled(), [(b"k", b"{}")], 10.0)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.01)
        sending.cancel()
        try:
            await sending
        except (asyncio.CancelledError, SendFailure):
            pass  # the caller sees its send end, one way or the other
        del sending
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert [c.get("message") for c in reported] == []
