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
    # A connection asyncpg left in the middle of an operation after a failure ("cannot
    # switch to state 15; another operation (2) is in progress", asyncpg issue 784, open):
    # unusable, like a lost one. The fault suite's PostgreSQL outage met it once in the sink.
    asyncpg.InternalClientError,
)
