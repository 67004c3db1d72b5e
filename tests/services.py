"""Where the integration tests get a real Kafka and PostgreSQL (architecture section 5).

In order of preference, for each service:

1. the environment (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``): a running service is reused
   and never stopped;
2. testcontainers, when a Docker engine answers;
3. the project's own local services (``logflume up``); at the end of the session only what
   this module started is stopped (services that were already running stay up).

In every case ``manager.up`` then runs against the result, so the database exists, the
migrations are applied and the pipeline's topics exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from kernel.settings import Settings
from kernel.topics import ensure_topics
from logflume.services import manager
from logflume.services.kafka import LocalKafka
from logflume.services.postgres import LocalPostgres
from sinks.migrations import apply_migrations

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
POSTGRES_IMAGE = "postgres:16-alpine"


class Services(NamedTuple):
    """The running services, as ``(bootstrap_servers, dsn)``."""

    bootstrap_servers: str
    dsn: str

    def settings(self, **overrides: Any) -> Settings:
        """Settings that point at these services (both external for the code under test)."""
        return Settings(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers, DATABASE_URL=self.dsn, **overrides
        )


@dataclass
class AcquiredServices:
    services: Services
    source: str  # e.g. "kafka from environment, postgres from local"
    _cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def release(self) -> None:
        """Stop whatever was started for the tests, newest first; never what was reused."""
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                await cleanup()
            except Exception:
                log.exception("could not stop a test service")


def docker_answers() -> bool:
    """True when a Docker engine answers a ping (quick; False on any failure)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return False  # no engine; also spares docker-py's leaked socket on a refused connect
    try:
        import docker  # only the testcontainers path needs it
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def base_settings() -> Settings:
    """``Settings()`` from the env; the local services' home is anchored at the repository."""
    if "LOGFLUME_HOME" in os.environ:
        return Settings()
    return Settings(home=REPO_ROOT / ".logflume")


async def acquire_services() -> AcquiredServices:
    settings = base_settings()
    acquired = AcquiredServices(Services("", ""), source="")
    try:
        await _acquire(settings, acquired)
    except BaseException:
        await acquired.release()  # containers or local services started before the failure
        raise
    return acquired


async def _acquire(settings: Settings, acquired: AcquiredServices) -> None:
    kafka_from = "environment" if settings.kafka_is_external else "local"
    postgres_from = "environment" if settings.postgres_is_external else "local"
    if not (settings.kafka_is_external and settings.postgres_is_external) and docker_answers():
        overrides: dict[str, str] = {}
        if not settings.kafka_is_external:
            overrides["KAFKA_BOOTSTRAP_SERVERS"] = await _start_kafka_container(acquired)
            kafka_from = "testcontainers"
        if not settings.postgres_is_external:
            overrides["DATABASE_URL"] = await _start_postgres_container(acquired)
            postgres_from = "testcontainers"
        settings = Settings(home=settings.home, **overrides)

    # The local services that already run are reused and stay up at the end of the session.
    not_running = [name for name, local in _locals(settings).items() if not local.is_running()]

    async def stop_what_we_started() -> None:
        await manager.down(settings, only=not_running)

    if not_running:
        acquired._cleanups.append(stop_what_we_started)
    # Waits for every service, starts the local ones, creates the database, migrates, topics.
    await manager.up(settings)
    acquired.services = Services(settings.bootstrap_servers, settings.dsn)
    acquired.source = f"kafka from {kafka_from}, postgres from {postgres_from}"
    log.info("integration services: %s (%s, %s)", acquired.source,
             settings.bootstrap_servers, settings.redacted_dsn)  # fmt: skip


def _locals(settings: Settings) -> dict[str, LocalKafka | LocalPostgres]:
    """The services that ``manager.up`` would manage locally under these settings."""
    found: dict[str, LocalKafka | LocalPostgres] = {}
    if not settings.kafka_is_external:
        found[manager.KAFKA] = LocalKafka(settings)
    if not settings.postgres_is_external:
        found[manager.POSTGRES] = LocalPostgres(settings)
    return found


async def _start_kafka_container(acquired: AcquiredServices) -> str:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # older testcontainers
        from testcontainers.kafka import KafkaContainer

    container = KafkaContainer(KAFKA_IMAGE).with_kraft()
    await asyncio.to_thread(container.start)
    acquired._cleanups.append(lambda: asyncio.to_thread(container.stop))
    return str(container.get_bootstrap_server())


async def _start_postgres_container(acquired: AcquiredServices) -> str:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # older testcontainers
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(POSTGRES_IMAGE, driver=None)
    await asyncio.to_thread(container.start)
    acquired._cleanups.append(lambda: asyncio.to_thread(container.stop))
    return str(container.get_connection_url(driver=None))


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name``."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def scratch_environment(
    services: Services, database: str, **overrides: Any
) -> AsyncIterator[Settings]:
    """A fresh, migrated database ``database`` and the pipeline's topics under
    ``overrides["topic_prefix"]``, as Settings; both are removed afterwards."""
    admin = await asyncpg.connect(services.dsn, timeout=30)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    settings = Settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        database_url=with_database(services.dsn, database),
        **overrides,
    )
    try:
        conn = await asyncpg.connect(settings.dsn, timeout=30)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        await ensure_topics(settings)
        yield settings
    finally:
        await _drop_scratch(services, settings, database)


async def _drop_scratch(services: Services, settings: Settings, database: str) -> None:
    kafka = AIOKafkaAdminClient(bootstrap_servers=services.bootstrap_servers)
    try:
        await kafka.start()
        names = [t for t in await kafka.list_topics() if t.startswith(settings.topic_prefix)]
        if names:
            await kafka.delete_topics(names)
    except Exception:
        pass  # a leftover topic with a unique name harms nobody
    finally:
        await kafka.close()
    await drop_database(services, database)


async def drop_database(services: Services, name: str) -> None:
    admin = await asyncpg.connect(services.dsn, timeout=30)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
