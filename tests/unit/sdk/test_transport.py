"""The Kafka transport's verdict on failed records, with a stand-in for aiokafka's producer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, ProducerClosed

from producers.sdk.config import SDKSettings
from producers.sdk.transport import KafkaTransport, SendFailure, _stop_quietly


class FailingProducer:
    """Every record's delivery fails with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    async def send(self, topic: str, value: bytes, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(self.error)
        return future

    async def stop(self) -> None:
        return None


def _send(error: BaseException) -> SendFailure:
    transport = KafkaTransport(SDKSettings(project="p"), compression=None)
    producer = FailingProducer(error)

    async def ready() -> Any:
        return producer

    transport._ready = ready  # type: ignore[method-assign]
    events = [(b"p/a", b'{"event_id":"e1"}'), (b"p/b", b'{"event_id":"e2"}')]
    with pytest.raises(SendFailure) as raised:
        asyncio.run(transport.send(events))
    return raised.value


def test_a_producer_closed_under_a_send_is_retried_not_rejected() -> None:
    # Another send of the same client failed and reset the shared producer: the broker
    # never refused these records (counting them rejected lost events in a broker restart).
    failure = _send(ProducerClosed())
    assert len(failure.retry) == 2 and failure.rejected == []


def test_a_record_the_producer_could_not_queue_in_time_is_retried_not_rejected() -> None:
    # aiokafka raises KafkaTimeoutError (retriable=False) when a partition's batch stays
    # full for the whole timeout: the broker is away, it refused nothing.
    failure = _send(KafkaTimeoutError())
    assert len(failure.retry) == 2 and failure.rejected == []


def test_a_record_the_broker_refuses_for_good_is_rejected() -> None:
    failure = _send(MessageSizeTooLargeError())
    assert failure.retry == [] and len(failure.rejected) == 2


class SlowToStop:
    """A producer whose ``stop`` takes a while (aiokafka's waits for its sender)."""

    async def stop(self) -> None:
        await asyncio.sleep(5)


async def test_stopping_a_producer_never_swallows_the_callers_cancellation() -> None:
    stopping = asyncio.ensure_future(_stop_quietly(SlowToStop(), 10.0))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping


async def test_a_producer_that_does_not_stop_in_time_is_left_quietly() -> None:
    await asyncio.wait_for(_stop_quietly(SlowToStop(), 0.05), 1.0)  # returns, no error
