"""The target database of a replay: created when missing, then migrated.

A replay into an empty database is the way to rebuild or to try a fix before switching
over, so ``--database-url`` may name a database that does not exist yet on a server that
does: it is created and the sink's migrations are applied, as ``logflume up`` does for the
live one (the same :func:`~logflume.services.postgres.ensure_database`).
"""

from __future__ import annotations

from kernel.clients import pg_connect
from logflume.services.postgres import ensure_database
from sinks.migrations import apply_migrations

__all__ = ["prepare_database"]


async def prepare_database(dsn: str) -> list[str]:
    """Create the database of ``dsn`` if missing, apply the migrations; the ones applied."""
    await ensure_database(dsn)
    conn = await pg_connect(dsn)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()
