"""PostgreSQL answers, stores and returns rows, and the migrations are applied exactly once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from sinks.migrations import apply_migrations, available_migrations
from tests.services import Services

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def conn(services: Services) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(services.dsn, timeout=30)
    try:
        yield connection
    finally:
        await connection.close()


async def test_write_then_read_back_in_a_private_schema(conn: asyncpg.Connection) -> None:
    schema = f"it_{uuid.uuid4().hex[:12]}"
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        await conn.execute(
            f"CREATE TABLE {schema}.probe (id bigint PRIMARY KEY, body jsonb NOT NULL, "
            "at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            f"INSERT INTO {schema}.probe (id, body) VALUES ($1, $2::jsonb)",
            7,
            '{"text": "héllo", "n": 1}',
        )
        row = await conn.fetchrow(f"SELECT id, body->>'text' AS text FROM {schema}.probe")
        assert row is not None
        assert (row["id"], row["text"]) == (7, "héllo")
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_ledger_lists_every_shipped_migration(conn: asyncpg.Connection) -> None:
    shipped = available_migrations()
    assert shipped, "no migration files are shipped in sinks/migrations"
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
    assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
        (m.version, m.name, m.checksum) for m in shipped
    ]


async def test_apply_migrations_twice_applies_nothing_the_second_time(
    conn: asyncpg.Connection,
) -> None:
    await apply_migrations(conn)  # whatever state the database was in: now up to date
    assert await apply_migrations(conn) == []
    count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    assert count == len(available_migrations())
