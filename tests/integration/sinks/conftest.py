"""Fixtures of the sink's integration tests: a fresh database and fresh topics per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from tests.integration.sinks.harness import SinkEnv
from tests.services import Services, scratch_environment

PARTITIONS = 4


@pytest_asyncio.fixture(loop_scope="session")
async def sink_env(services: Services) -> AsyncIterator[SinkEnv]:
    """A database of its own (CREATE DATABASE, migrations) and a unique topic prefix."""
    tag = uuid.uuid4().hex[:10]
    database = f"lf_sink_it_{tag}"
    async with scratch_environment(
        services,
        database,
        topic_prefix=f"lf-sink-it-{tag}",
        partitions=PARTITIONS,
        sink_group=f"lf-sink-it-{tag}",
        sink_linger_ms=50,
        sink_retry_max_s=2.0,
    ) as settings:
        conn = await asyncpg.connect(settings.dsn, timeout=30)
        try:
            yield SinkEnv(settings, conn, database)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
