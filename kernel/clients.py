"""Every Kafka client and PostgreSQL connection of logflume's services, built in one place.

Callers pass the :class:`~kernel.settings.Settings` (or, where only an address is at hand,
the bootstrap servers or the DSN as a string) and the options of their use (a group, fetch
sizes, acks); what every client of a cluster needs (its addresses today; TLS, SASL or
``sslmode`` tomorrow) is added here, so such a change is one edit. The SDK builds its own
producer from its own settings (:mod:`producers.sdk.transport`): it runs inside
applications, not as a logflume service.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from kernel.errors import ServiceError
from kernel.logs import hide_payload_debug
from kernel.settings import Settings

__all__ = [
    "kafka_admin",
    "kafka_consumer",
    "kafka_options",
    "kafka_producer",
    "pg_connect",
    "pg_pool",
]


def kafka_options(cluster: Settings | str) -> dict[str, Any]:
    """The options every Kafka client of the cluster takes."""
    servers = cluster if isinstance(cluster, str) else cluster.bootstrap_servers
    return {"bootstrap_servers": servers}


def kafka_producer(cluster: Settings | str, **options: Any) -> AIOKafkaProducer:
    hide_payload_debug()
    return AIOKafkaProducer(**kafka_options(cluster), **options)


def kafka_consumer(cluster: Settings | str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    hide_payload_debug()
    return AIOKafkaConsumer(*topics, **kafka_options(cluster), **options)


def kafka_admin(cluster: Settings | str, **options: Any) -> AIOKafkaAdminClient:
    hide_payload_debug()
    return AIOKafkaAdminClient(**kafka_options(cluster), **options)


def _dsn(target: Settings | str) -> str:
    return target if isinstance(target, str) else target.dsn


async def pg_connect(
    target: Settings | str, *, timeout: float = 30, **options: Any
) -> asyncpg.Connection:
    """One connection to the settings' database or a DSN (a secret: never log it);
    ``options`` are asyncpg's (``database`` picks another database of the cluster)."""
    try:
        return await asyncpg.connect(_dsn(target), timeout=timeout, **options)
    except ValueError:  # asyncpg's parse errors quote pieces of the DSN: its password
        raise _unparsable_dsn() from None


async def pg_pool(target: Settings | str, **options: Any) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(_dsn(target), **options)
    except ValueError:
        raise _unparsable_dsn() from None
    assert pool is not None  # None only when the pool is not awaited
    return pool


def _unparsable_dsn() -> ServiceError:
    return ServiceError(
        "the database URL (DATABASE_URL) could not be parsed; percent-encode the characters "
        "/ ? # @ : of its user and password (the URL is not shown: it holds the password)"
    )
