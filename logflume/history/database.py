"""The target database of a replay: created when missing, then migrated.

A replay into an empty database is the way to rebuild or to try a fix before switching
over, so ``--database-url`` may name a database that does not exist yet on a server that
does: it is created (by connecting to the server's ``postgres`` maintenance database) and
the sink's migrations are applied, as ``logflume up`` does for the live one.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

from sinks.migrations import apply_migrations

__all__ = ["prepare_database"]


def _database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


async def prepare_database(dsn: str) -> list[str]:
    """Create the database of ``dsn`` if missing, apply the migrations; the ones applied."""
    try:
        conn = await asyncpg.connect(dsn, timeout=30)
    except asyncpg.InvalidCatalogNameError:
        name = _database_name(dsn)
        maintenance = urlunsplit(urlsplit(dsn)._replace(path="/postgres"))
        admin = await asyncpg.connect(maintenance, timeout=30)
        try:
            quoted = '"' + name.replace('"', '""') + '"'
            await admin.execute(f"CREATE DATABASE {quoted}", timeout=60)
        except asyncpg.DuplicateDatabaseError:
            pass  # created meanwhile by another replay
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()
