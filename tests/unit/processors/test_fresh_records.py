"""Fix 3 of ``processors.worker.patch_faust_consumer``: a batch fetched across a seek or a
new group generation is dropped, so a stream never gets records from the old positions
after the seek (before it, Faust handed them on and committed past the record at the
committed offset without processing it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from processors.worker import fresh_records_only

BATCH = {"events:2": ["offset 148", "offset 149"]}


class FakeConsumer:
    """What the wrapper reads: the app's group generation and the count of seeks."""

    def __init__(self) -> None:
        self.app = SimpleNamespace(consumer_generation_id=7)
        self._logflume_seeks = 0


def _fetch(during: Any = None) -> Any:
    async def wait_next_records(self: FakeConsumer, timeout: float) -> Any:
        if during is not None:
            during(self)  # what happens while the fetch is in flight
        return dict(BATCH), {"events:2"}

    return wait_next_records


async def test_a_batch_fetched_without_a_seek_is_handed_on() -> None:
    records, active = await fresh_records_only(_fetch())(FakeConsumer(), 1.0)
    assert records == BATCH and active == {"events:2"}


async def test_a_batch_fetched_across_a_seek_is_dropped() -> None:
    def seek(consumer: FakeConsumer) -> None:
        consumer._logflume_seeks += 1

    records, active = await fresh_records_only(_fetch(seek))(FakeConsumer(), 1.0)
    assert records == {} and active == {"events:2"}


async def test_a_batch_fetched_across_a_new_generation_is_dropped() -> None:
    def rebalance(consumer: FakeConsumer) -> None:
        consumer.app.consumer_generation_id = 8

    records, _ = await fresh_records_only(_fetch(rebalance))(FakeConsumer(), 1.0)
    assert records == {}


async def test_the_patch_wraps_faust_and_counts_both_ends_of_a_seek() -> None:
    from faust.transport.consumer import Consumer

    from processors.worker import patch_faust_consumer

    patch_faust_consumer()
    consumer: Any = Consumer
    assert consumer._wait_next_records.__qualname__.startswith("fresh_records_only")
    fake: Any = SimpleNamespace(_logflume_seeks=0)

    seen: list[int] = []

    async def seek_to_committed() -> dict[Any, int]:
        seen.append(fake._logflume_seeks)  # counted before the seek starts
        return {}

    fake.seek_to_committed = seek_to_committed
    fake._read_offset, fake._committed_offset = {}, {}
    fake.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    await consumer.perform_seek(fake)
    assert seen == [1] and fake._logflume_seeks == 2
