"""The fetch-loop fixes of ``processors/backpressure.py``: a worker whose stream buffers were
full reads on as soon as one drains, instead of up to a second later (Faust's fetch loop
slept 1 s with every partition paused, and its 1 s wait for the partitions active when it
started missed a partition taken back meanwhile)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from kernel.settings import Settings
from processors import backpressure
from processors.app import make_app
from processors.backpressure import patch_faust_paused_fetch
from processors.worker import patch_faust_consumer, patch_faust_fetch_wait

TOPIC = TP("t.events", 0)


class Fetches:
    """Stands in for the consumer thread's fetch: records the partitions asked for."""

    def __init__(self) -> None:
        self.asked: list[set[Any]] = []

    async def __call__(self, active_partitions: Any, timeout: float) -> dict[Any, list[Any]]:
        self.asked.append(set(active_partitions))
        return {}


def _consumer(fetches: Fetches) -> Any:
    patch_faust_paused_fetch()
    patch_faust_paused_fetch()  # idempotent: no double wrap
    consumer: Any = make_app(Settings()).consumer  # not started
    consumer._getmany = fetches
    consumer._set_active_tps(set())  # assigned nothing, or every partition paused
    return consumer


async def test_a_worker_whose_buffers_were_all_full_fetches_once_one_drains() -> None:
    fetches = Fetches()
    consumer = _consumer(fetches)
    consumer._buffered_partitions.add(TOPIC)  # Faust's on_buffer_full took it out
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, consumer.on_buffer_drop, TOPIC)  # the stage drained its buffer
    started = time.monotonic()
    records, active = await consumer._wait_next_records(1.0)
    waited = time.monotonic() - started
    # Faust alone slept its second and returned nothing, without asking for the partition.
    assert fetches.asked == [{TOPIC}]
    assert records == {} and active == {TOPIC}
    assert waited < backpressure.IDLE_WAIT_S / 2


async def test_a_worker_without_partitions_asks_for_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backpressure, "IDLE_WAIT_S", 0.05)
    fetches = Fetches()
    consumer = _consumer(fetches)
    records, active = await consumer._wait_next_records(1.0)
    assert records == {} and active == set()
    assert fetches.asked == []


async def test_a_resumed_partition_ends_the_wait_too() -> None:
    fetches = Fetches()
    consumer = _consumer(fetches)
    consumer.pause_partitions({TOPIC})
    asyncio.get_running_loop().call_later(0.05, consumer.resume_partitions, {TOPIC})
    await consumer._wait_next_records(1.0)
    assert fetches.asked == [{TOPIC}]


async def test_the_consumer_threads_wait_is_capped() -> None:
    """A partition taken back while the thread waits is asked for within the fetch wait."""
    patch_faust_consumer()
    patch_faust_fetch_wait(50)
    waits: list[float] = []

    async def call_thread(fn: Any, consumer: Any, active: Any, **kwargs: Any) -> dict:
        waits.append(kwargs["timeout"])
        return {}

    thread = SimpleNamespace(
        _ensure_consumer=lambda: SimpleNamespace(_max_poll_records=None),
        call_thread=call_thread,
        _fetch_records=None,
    )
    getmany: Any = AIOKafkaConsumerThread.getmany
    await getmany(thread, {TOPIC}, 1.0)  # Faust's fetch loop asks with 1 s
    await getmany(thread, {TOPIC}, 0.01)
    assert waits == [0.05, 0.01]
