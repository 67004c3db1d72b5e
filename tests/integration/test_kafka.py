"""The broker is a real Apache Kafka: idempotent produce, consume back, broker configs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.transaction import InitProducerIdRequest

from kernel.settings import Settings
from kernel.topics import INDEX_BYTES, ensure_topics
from tests.services import Services

pytestmark = pytest.mark.integration

PARTITIONS = 3
RECORDS = 300


@pytest_asyncio.fixture(loop_scope="session")
async def admin(services: Services) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=services.bootstrap_servers)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def topic(admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    """A fresh topic for one test, deleted afterwards."""
    name = f"logflume-it-{uuid.uuid4().hex[:12]}"
    response = await admin.create_topics(
        [NewTopic(name=name, num_partitions=PARTITIONS, replication_factor=1)]
    )
    assert [entry[1] for entry in response.topic_errors] == [0], response.topic_errors
    try:
        yield name
    finally:
        await admin.delete_topics([name])


async def test_idempotent_produce_then_consume_everything(services: Services, topic: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=services.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        sent = [(f"key-{i % 17}".encode(), f"value-{i}".encode()) for i in range(RECORDS)]
        futures = [await producer.send(topic, value=v, key=k) for k, v in sent]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert {m.partition for m in metadata} <= set(range(PARTITIONS))

    consumer = AIOKafkaConsumer(
        bootstrap_servers=services.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: dict[int, list[tuple[bytes, bytes]]] = {}
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        async with asyncio.timeout(60):
            while sum(len(v) for v in received.values()) < RECORDS:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    received.setdefault(tp.partition, []).extend(
                        (r.key, r.value) for r in records if r.key and r.value
                    )
    finally:
        await consumer.stop()

    assert sorted(kv for part in received.values() for kv in part) == sorted(sent)
    for records in received.values():  # per partition (hence per key), the order is kept
        for key in {k for k, _ in records}:
            in_partition = [v for k, v in records if k == key]
            assert in_partition == [v for k, v in sent if k == key]


async def test_broker_is_apache_kafka(services: Services, admin: AIOKafkaAdminClient) -> None:
    cluster = await admin.describe_cluster()
    broker_id = cluster["brokers"][0]["node_id"]
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, str(broker_id))]
    )
    resources = [r for response in responses for r in response.resources]
    assert resources and resources[0][0] == 0, resources  # error_code
    names = {entry[0] for entry in resources[0][4]}
    # Configs only a real Apache Kafka broker (KRaft-capable) describes.
    assert {"process.roles", "inter.broker.protocol.version", "log.dirs"} <= names

    client = AIOKafkaClient(bootstrap_servers=services.bootstrap_servers)
    await client.bootstrap()
    try:
        node_id = client.get_random_node()
        assert node_id is not None
        response = await client.send(
            node_id, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000)
        )
    finally:
        await client.close()
    assert response.error_code == 0, for_code(response.error_code)
    assert response.producer_id >= 0


async def test_the_topics_logflume_creates_have_small_index_files(
    services: Services, admin: AIOKafkaAdminClient
) -> None:
    """Pipeline topics and changelogs (the ``extra`` ones) get 1 MiB index files, not
    Kafka's 10 MiB whose first touch the page cache's readahead zero-fills."""
    prefix = f"logflume-it-{uuid.uuid4().hex[:12]}"
    settings = Settings(kafka_bootstrap_servers=services.bootstrap_servers, topic_prefix=prefix)
    changelog = f"{prefix}.processors-x-changelog"
    await ensure_topics(settings, extra={changelog: {"cleanup.policy": "compact"}})
    try:
        names = [settings.topics.events, changelog]
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        found = {
            resource[3]: {entry[0]: entry[1] for entry in resource[4]}
            for response in responses
            for resource in response.resources
        }
        assert {name: found[name]["segment.index.bytes"] for name in names} == {
            name: str(INDEX_BYTES) for name in names
        }
        assert found[changelog]["cleanup.policy"] == "compact"
    finally:
        await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(prefix)])
