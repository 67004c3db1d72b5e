"""Fixtures of the sink's integration tests: a fresh database and fresh topics per test."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient

from logflume.services.prerequisites import ServiceError
from logflume.services.topics import ensure_topics
from logflume.settings import Settings
from sinks.migrations import apply_migrations
from tests.integration.sinks.harness import SinkEnv
from tests.integration.sinks.stream import with_database
from tests.services import Services

PARTITIONS = 4


@pytest_asyncio.fixture(loop_scope="session")
async def sink_env(services: Services) -> AsyncIterator[SinkEnv]:
    """A database of its own (CREATE DATABASE, migrations) and a unique topic prefix."""
    tag = uuid.uuid4().hex[:10]
    database = f"lf_sink_it_{tag}"
    admin = await asyncpg.connect(services.dsn, timeout=30)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = with_database(services.dsn, database)
    conn = await asyncpg.connect(dsn, timeout=30)
    settings = Settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        database_url=dsn,
        topic_prefix=f"lf-sink-it-{tag}",
        partitions=PARTITIONS,
        sink_group=f"lf-sink-it-{tag}",
        sink_linger_ms=50,
        sink_retry_max_s=2.0,
    )
    try:
        await apply_migrations(conn)
        await _ensure_topics(settings)
        yield SinkEnv(settings, conn, database)
    finally:
        await _cleanup(services, settings, conn, database)


async def _ensure_topics(settings: Settings, attempts: int = 5) -> None:
    """``ensure_topics``, again when the broker does not yet describe topics it has just
    created (its metadata lags the creation: UnknownTopicOrPartitionError)."""
    for attempt in range(1, attempts + 1):
        try:
            await ensure_topics(settings)
            return
        except ServiceError:
            if attempt == attempts:
                raise
            await asyncio.sleep(0.5 * attempt)


async def _cleanup(
    services: Services, settings: Settings, conn: asyncpg.Connection, database: str
) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
    kafka = AIOKafkaAdminClient(bootstrap_servers=services.bootstrap_servers)
    try:
        await kafka.start()
        await kafka.delete_topics(list(settings.topics.all()))
    except Exception:
        pass  # a leftover topic with a unique name harms nobody
    finally:
        await kafka.close()
    admin = await asyncpg.connect(services.dsn, timeout=30)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()
