"""Bounded memory, overflow policies, outages and restarts, against fake transports."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from producers.sdk import MemoryTransport
from producers.sdk import worker as worker_module
from producers.sdk.encoding import Encoded
from producers.sdk.stats import DropReason

from .conftest import FlakyTransport, MakeClient, wait_for


def emit_timed(client: object, count: int) -> float:
    """Emit ``count`` logs; the 99th percentile call time in seconds."""
    took = []
    for i in range(count):
        start = time.perf_counter()
        client.log(output=f"event {i}")  # type: ignore[attr-defined]
        took.append(time.perf_counter() - start)
    assert max(took) < 1.0  # far below any broker timeout: no call waited for the broker
    return sorted(took)[int(count * 0.99)]


def test_stalled_broker_with_drop_policy_never_blocks_and_counts_drops(
    make_client: MakeClient,
) -> None:
    transport = MemoryTransport()
    transport.stall()
    client = make_client(
        transport,
        overflow="drop",
        max_queue_events=500,
        max_inflight_bytes=20_000,
        batch_max_events=100,
    )
    assert emit_timed(client, 5000) < 0.01
    stats = client.stats()
    assert stats.dropped.get(DropReason.QUEUE_FULL, 0) > 0
    assert stats.spooled == 0
    transport.release()
    assert client.flush(10) is False  # delivered what it kept, but it dropped events
    stats = client.stats()
    assert stats.queued == stats.inflight == 0
    assert stats.sent + stats.dropped[DropReason.QUEUE_FULL] == 5000
    assert len(transport.event_ids()) == stats.sent
    assert client.flush(10) is True  # nothing lost since the previous flush


def test_stalled_broker_with_spool_policy_spills_to_disk_and_loses_nothing(
    make_client: MakeClient, tmp_path: Path
) -> None:
    transport = MemoryTransport()
    transport.stall()
    client = make_client(
        transport, max_queue_events=500, max_inflight_bytes=20_000, batch_max_events=100
    )
    assert emit_timed(client, 5000) < 0.01
    wait_for(lambda: client.stats().spooled > 0)
    transport.release()
    assert client.flush(15)
    stats = client.stats()
    assert stats.dropped_total == 0
    ids = transport.event_ids()
    assert len(ids) == len(set(ids)) == 5000
    assert stats.spool_bytes == 0
    assert not list((tmp_path / "spool").rglob("*.seg"))


def test_failed_events_are_resent_from_the_spool_with_the_same_event_ids(
    make_client: MakeClient,
) -> None:
    transport = FlakyTransport(failures=3)
    client = make_client(transport)
    for i in range(50):
        client.log(output=str(i))
    assert client.flush(10)
    failed_ids = {
        orjson.loads(data)["event_id"] for batch in transport.failed_batches for _, data in batch
    }
    delivered = transport.event_ids()
    assert failed_ids and failed_ids <= set(delivered)
    assert len(delivered) == 50
    stats = client.stats()
    assert stats.spooled >= len({i for i in failed_ids}) and stats.resent_from_spool > 0


def test_spooled_events_are_resent_in_order(make_client: MakeClient) -> None:
    transport = MemoryTransport(partitions=1)
    transport.down = True
    client = make_client(transport)
    for i in range(200):
        client.log(reference_id="same-entity", output=str(i))
    wait_for(lambda: client.stats().spooled == 200)
    transport.down = False
    assert client.flush(10)
    outputs = [int(body["body"]["output"]) for body in transport.bodies()]
    assert outputs == list(range(200))


def test_a_batch_is_spooled_a_slice_at_a_time_whole_and_in_order(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker encodes a batch's spool frames a slice at a time, with a pass of its loop
    # between slices: a 2,000-event batch encoded at once held the GIL for 1-3 ms, which an
    # app thread waiting for it waited out. The batch is still written whole and in order.
    sizes: list[int] = []
    passed: list[int] = []  # per slice: how many earlier slices' loop callbacks had run
    ran: list[int] = []
    encode = worker_module.encode_frames

    def recording(events: list[Encoded]) -> list[bytes]:
        passed.append(len(ran))
        sizes.append(len(events))
        # Runs at the loop's next pass: before the next slice only if the worker yields.
        asyncio.get_running_loop().call_soon(ran.append, len(sizes))
        return encode(events)

    monkeypatch.setattr(worker_module, "encode_frames", recording)
    transport = MemoryTransport(partitions=1)
    transport.down = True
    # One cycle takes the whole batch: woken at 1,000 queued events, not by the interval.
    client = make_client(transport, batch_max_events=1000, flush_interval_ms=5000)
    for i in range(1000):
        client.log(reference_id="same-entity", output=str(i))
    wait_for(lambda: client.stats().spooled == 1000)
    assert sum(sizes) >= 1000
    assert max(sizes) <= worker_module._ENCODE_SLICE
    assert passed == list(range(len(sizes)))  # a pass of the loop before every next slice
    transport.down = False
    assert client.flush(10)
    assert [int(body["body"]["output"]) for body in transport.bodies()] == list(range(1000))


def test_a_new_client_on_the_same_spool_sends_what_the_last_one_left(
    make_client: MakeClient,
) -> None:
    down = MemoryTransport()
    down.down = True
    first = make_client(down)
    ids = {first.log(output=str(i)) for i in range(300)}
    assert first.close(timeout=0.5) is False  # the broker never came back
    assert first.stats().spooled == 300
    up = MemoryTransport()
    second = make_client(up)
    assert second.flush(10)
    assert {body["body"]["id"] for body in up.bodies()} == ids
    assert second.stats().resent_from_spool == 300


def test_close_without_a_spool_counts_what_it_could_not_send(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    transport.down = True
    client = make_client(transport, overflow="drop")
    for i in range(20):
        client.log(output=str(i))
    assert client.close(timeout=0.3) is False
    assert client.stats().dropped == {DropReason.UNSENT_AT_CLOSE: 20}


def test_full_spool_drops_with_a_reason(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    transport.down = True
    client = make_client(transport, spool_max_bytes=4096)
    for i in range(200):
        client.log(output=f"{i:>40}")
    wait_for(lambda: client.stats().spooled + client.stats().dropped_total >= 200)
    stats = client.stats()
    assert 0 < stats.spooled < 200
    assert stats.dropped[DropReason.SPOOL_FULL] == 200 - stats.spooled
    assert stats.spool_bytes <= 4096


def test_callers_spill_to_the_spool_when_the_worker_cannot_keep_up(
    make_client: MakeClient,
) -> None:
    transport = MemoryTransport()
    # A worker that wakes rarely: the queue (10 events) overflows at the callers.
    client = make_client(
        transport, max_queue_events=10, flush_interval_ms=60_000, batch_max_events=100_000
    )
    for i in range(100):
        client.log(output=str(i))
    stats = client.stats()
    assert stats.queued <= 10
    assert stats.spooled == 90 and stats.dropped_total == 0
    assert client.flush(10)
    assert len(transport.event_ids()) == 100


def test_queue_byte_bound_limits_the_count(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    transport.stall()
    client = make_client(
        transport,
        overflow="drop",
        max_queue_events=100_000,
        max_queue_bytes=64 * 1024,
        max_inflight_bytes=8 * 1024,
        batch_max_events=50,
    )
    for _ in range(3000):
        client.log(output="y" * 900)
    time.sleep(0.2)
    for _ in range(3000):
        client.log(output="y" * 900)
    # ~1 KB events: the byte bound holds the queue to ~64 events, far below the count bound
    assert client.stats().queued <= 200
    assert client.stats().dropped[DropReason.QUEUE_FULL] > 5000
    transport.release()


def test_broker_is_probed_again_when_the_spool_cannot_be_written(
    make_client: MakeClient,
) -> None:
    transport = FlakyTransport(failures=1)
    client = make_client(transport, spool_max_bytes=1024)  # the failed batch cannot fit
    for i in range(100):
        client.log(output=f"{i:>40}")
    wait_for(lambda: client.stats().dropped.get(DropReason.SPOOL_FULL, 0) > 0)
    for i in range(10):
        client.log(output=f"after {i}")
    assert client.flush(10) is False  # the failed batch was dropped (spool_full)
    outputs = {body["body"]["output"] for body in transport.bodies()}
    assert {f"after {i}" for i in range(10)} <= outputs


def test_a_spooled_event_kafka_refuses_for_good_is_counted_and_the_drain_goes_on(
    make_client: MakeClient,
) -> None:
    # One event the SDK accepts is larger than the broker takes (its message.max.bytes). In
    # the spool it must be counted and leave it, not block the events after it.
    down = MemoryTransport()
    down.down = True
    first = make_client(down)
    for i in range(10):
        first.log(reference_id="before", output=str(i))
    first.log(reference_id="big", output="x" * 8000)
    for i in range(10):
        first.log(reference_id="after", output=str(i))
    assert first.close(timeout=0.5) is False
    assert first.stats().spooled == 21
    refusing = MemoryTransport(record_max_bytes=1500, refuse_over_bytes=4096)
    second = make_client(refusing)
    assert second.flush(10) is False  # the spool it took over lost an event
    stats = second.stats()
    assert stats.dropped == {DropReason.REJECTED_BY_BROKER: 1}
    assert stats.sent == stats.resent_from_spool == 20  # each delivered event counted once
    assert stats.spool_bytes == 0
    refs = [body["body"]["reference_id"] for body in refusing.bodies()]
    assert sorted(refs) == ["after"] * 10 + ["before"] * 10


@pytest.mark.parametrize("overflow", ["spool", "drop"])
def test_close_whose_deadline_passes_while_a_batch_is_routed_keeps_or_counts_it(
    make_client: MakeClient, overflow: str
) -> None:
    # close(timeout=0): the worker's closing cycle routes the queued batch to a send task and
    # the deadline has passed, so the task is cancelled before its first step (its own
    # handler never runs). The batch was once neither sent, spooled nor counted.
    transport = MemoryTransport()
    client = make_client(transport, overflow=overflow, flush_interval_ms=1000)
    for i in range(500):
        client.log(output=str(i))
    client.close(timeout=0)
    stats = client.stats()
    assert stats.inflight == 0
    kept = stats.spooled if overflow == "spool" else stats.dropped[DropReason.UNSENT_AT_CLOSE]
    assert len(transport.event_ids()) + kept == stats.sent + kept == 500


def test_a_send_that_outlasts_send_timeout_goes_to_the_spool(make_client: MakeClient) -> None:
    # aiokafka retries a retriable error forever with an idempotent producer: without a
    # bound the events waited in memory (up to max_inflight_bytes) for the whole outage.
    transport = MemoryTransport()
    transport.stall()
    client = make_client(transport, send_timeout_s=0.3)
    for i in range(300):
        client.log(output=str(i))
    wait_for(lambda: client.stats().spooled == 300, timeout=5)
    assert client.stats().inflight == 0
    transport.release()
    assert client.flush(10)
    assert len(set(transport.event_ids())) == 300  # all delivered (the stalled send may too)
