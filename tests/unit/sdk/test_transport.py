"""The Kafka transport's verdict on failed records, with a stand-in for aiokafka's producer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, ProducerClosed

from producers.sdk.config import SDKSettings
from producers.sdk.transport import KafkaTransport, SendFailure


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
