"""Fixtures of the SDK integration tests: a real broker, a fresh topic per test.

The broker: ``KAFKA_BOOTSTRAP_SERVERS`` when set (only Kafka is needed here), else the
project's ``services`` fixture (Kafka and PostgreSQL). The outage test also needs to stop
and start the broker, which it can only do to the project's own local broker
(``logflume up`` with the same ``LOGFLUME_*`` settings); it is skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable

import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from logflume.services.kafka import LocalKafka
from tests.services import base_settings

PARTITIONS = 6


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if from_env:
        return from_env
    return str(request.getfixturevalue("services").bootstrap_servers)


@pytest_asyncio.fixture(loop_scope="session")
async def topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A fresh events topic for one test (auto creation is off on the broker)."""
    name = f"logflume-sdk-it-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=PARTITIONS, replication_factor=1)]
        )
        yield name
    finally:
        try:
            await admin.delete_topics([name])
        except Exception:  # the broker may be down after a failed outage test
            pass
        await admin.close()


@pytest.fixture
def local_kafka(kafka_bootstrap: str) -> LocalKafka:
    """The project's local broker serving ``kafka_bootstrap``, which tests may stop/start."""
    local = LocalKafka(base_settings())
    if not local.is_running() or local.address not in kafka_bootstrap.split(","):
        pytest.skip("stopping the broker needs the project's own local broker (logflume up)")
    return local


async def consume_events(
    bootstrap: str, topic: str, *, expected: int, timeout_s: float = 90.0
) -> list[dict[str, object]]:
    """Every event in ``topic`` (records unpacked), reading until ``expected`` distinct
    event ids were seen or the topic stays quiet after the timeout."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    events: list[dict[str, object]] = []
    seen: set[object] = set()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while len(seen) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    assert record.value is not None
                    for event in orjson.loads(record.value):
                        events.append(event)
                        seen.add(event["event_id"])
    finally:
        await consumer.stop()
    return events


def consume(bootstrap: str, topic: str, *, expected: int) -> list[dict[str, object]]:
    return asyncio.run(consume_events(bootstrap, topic, expected=expected))


def percentile(samples: Iterable[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]
