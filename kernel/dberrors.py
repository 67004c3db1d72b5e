"""Which failures mean that PostgreSQL is unreachable: the connection or the server, not
the query or the data. The sink retries its whole batch on them (:mod:`sinks.consumer`);
the gateway falls back to its caches and its local spool (:mod:`gateway.outage`)."""

from __future__ import annotations

import asyncpg

__all__ = ["UNREACHABLE"]

UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)
