"""``up`` / ``down`` / ``status`` of the services the pipeline needs (architecture section 5).

For each of Kafka and PostgreSQL: when the environment points at a running service
(``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``) it is external: ``up`` only waits for it to
answer and ``down`` never touches it. Otherwise the local one under ``<home>`` is started by
``up`` (a no-op when it already runs) and stopped by ``down``. After the services answer,
``up`` creates the database if needed, applies the migrations and creates the topics.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field

from kernel.clients import pg_connect
from kernel.settings import Settings
from kernel.topics import TopicsReport, ensure_topics, kafka_answers, wait_for_kafka
from logflume.services.kafka import local_nodes, nodes_on_disk
from logflume.services.postgres import (
    LocalPostgres,
    ensure_database,
    postgres_problem,
    wait_for_postgres,
)
from logflume.services.prerequisites import (
    MissingPrerequisite,
    ServiceError,
    find_postgres_binaries,
    require_java,
    require_maven,
    require_postgres_os_user,
)
from sinks.migrations import apply_migrations

__all__ = [
    "KAFKA",
    "POSTGRES",
    "SERVICES",
    "DownReport",
    "ServiceAction",
    "ServiceState",
    "StatusReport",
    "UpReport",
    "check_prerequisites",
    "down",
    "migrate",
    "status",
    "up",
]

log = logging.getLogger(__name__)

KAFKA = "kafka"
POSTGRES = "postgres"
SERVICES = (KAFKA, POSTGRES)
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class ServiceAction:
    """What ``up`` or ``down`` did to one service."""

    name: str
    managed: bool  # True: the local service under <home>; False: external (from the env)
    where: str  # host:port or a redacted DSN, never a password
    action: str  # started | already running | answering | stopped | not running | not touched
    pid: int | None = None

    @property
    def started(self) -> bool:
        return self.action == "started"


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What ``status`` found for one service."""

    name: str
    managed: bool
    where: str
    running: bool  # local: the process is alive; external: same as answering
    answering: bool
    pid: int | None = None
    detail: str = ""


@dataclass(slots=True)
class UpReport:
    services: list[ServiceAction]
    database_created: bool = False
    migrations_applied: list[str] = field(default_factory=list)
    topics: TopicsReport = field(default_factory=TopicsReport)

    @property
    def started(self) -> list[str]:
        """Names of the services this ``up`` started (for a caller that must undo it)."""
        return [s.name for s in self.services if s.started]


@dataclass(slots=True)
class DownReport:
    services: list[ServiceAction]


@dataclass(slots=True)
class StatusReport:
    services: list[ServiceState]


def check_prerequisites(settings: Settings) -> None:
    """Raise one :class:`MissingPrerequisite` naming every tool that ``up`` would need."""
    missing: list[MissingPrerequisite] = []
    checks = []
    if not settings.kafka_is_external:
        nodes = local_nodes(settings)
        if not all(node.is_running() for node in nodes):
            checks.append(require_java)
            if not nodes[0].jars_present():
                checks.append(require_maven)
    if not settings.postgres_is_external and not LocalPostgres(settings).is_running():
        checks.append(find_postgres_binaries)
        if os.geteuid() == 0:
            checks.append(require_postgres_os_user)
    for check in checks:
        try:
            check()
        except MissingPrerequisite as exc:
            missing.append(exc)
    if missing:
        raise MissingPrerequisite.combine(missing)


async def up(settings: Settings) -> UpReport:
    """Bring both services up (or wait for external ones), then database, migrations, topics."""
    check_prerequisites(settings)
    results = await asyncio.gather(_up_kafka(settings), _up_postgres(settings),
                                   return_exceptions=True)  # fmt: skip
    for result in results:
        if isinstance(result, BaseException):
            raise result
    report = UpReport(services=[r for r in results if isinstance(r, ServiceAction)])

    report.database_created = await ensure_database(settings.dsn)
    report.migrations_applied = await migrate(settings)
    report.topics = await ensure_topics(settings)
    return report


async def migrate(settings: Settings) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied."""
    conn = await pg_connect(settings)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


async def _up_kafka(settings: Settings) -> ServiceAction:
    timeout = settings.startup_timeout_s
    if settings.kafka_is_external:
        await wait_for_kafka(settings.bootstrap_servers, timeout)
        return ServiceAction(KAFKA, False, settings.bootstrap_servers, "answering")
    nodes = local_nodes(settings)
    where = settings.bootstrap_servers
    nodes[0].cluster_id()  # refuses a home formatted with another node count
    pids = [node.pid() for node in nodes]
    for node, pid in zip(nodes, pids, strict=True):
        if pid is not None:
            _same_address(KAFKA, node.running_address(), node.address, "LOGFLUME_KAFKA_PORT")
    if all(pid is not None for pid in pids):
        await wait_for_kafka(where, timeout)  # it may still be starting
        return ServiceAction(KAFKA, True, where, "already running", pids[0])
    await asyncio.to_thread(nodes[0].ensure_jars)  # once, before the nodes start together
    # Every node starts before any is waited for: a KRaft node answers only once a
    # majority of the controllers has formed the quorum.
    started = [
        await asyncio.to_thread(n.start) if p is None else p
        for n, p in zip(nodes, pids, strict=True)
    ]
    await asyncio.gather(*(n.wait_until_ready(p) for n, p in zip(nodes, started, strict=True)))
    return ServiceAction(KAFKA, True, where, "started", started[0])


async def _up_postgres(settings: Settings) -> ServiceAction:
    timeout = settings.startup_timeout_s
    if settings.postgres_is_external:
        await wait_for_postgres(settings.dsn, timeout)
        return ServiceAction(POSTGRES, False, settings.redacted_dsn, "answering")
    local = LocalPostgres(settings)
    pid = local.pid()
    action = "already running"
    if pid is not None:
        _same_address(POSTGRES, local.running_address(), local.address, "LOGFLUME_POSTGRES_PORT")
    else:
        pid = await asyncio.to_thread(local.start)
        action = "started"
    await wait_for_postgres(settings.dsn, timeout)
    return ServiceAction(POSTGRES, True, settings.redacted_dsn, action, pid)


def _same_address(name: str, running: str | None, wanted: str, env_var: str) -> None:
    if running is not None and running != wanted:
        raise ServiceError(
            f"the local {name} already runs on {running}, not {wanted} ({env_var} changed?); "
            "run `logflume down` first to restart it with the new settings"
        )


async def down(settings: Settings, only: Collection[str] | None = None) -> DownReport:
    """Stop the local services (those in ``only``, default all); external ones are untouched."""
    names = SERVICES if only is None else tuple(n for n in SERVICES if n in only)
    actions: list[ServiceAction] = []
    if KAFKA in names:
        if settings.kafka_is_external:
            actions.append(ServiceAction(KAFKA, False, settings.bootstrap_servers, "not touched"))
        else:
            nodes = nodes_on_disk(settings)
            pids = await asyncio.gather(*(asyncio.to_thread(n.stop) for n in nodes))
            stopped = [pid for pid in pids if pid is not None]
            action = "stopped" if stopped else "not running"
            where = ",".join(n.address for n in nodes)
            first = stopped[0] if stopped else None
            actions.append(ServiceAction(KAFKA, True, where, action, first))
    if POSTGRES in names:
        if settings.postgres_is_external:
            actions.append(ServiceAction(POSTGRES, False, settings.redacted_dsn, "not touched"))
        else:
            pid = await asyncio.to_thread(LocalPostgres(settings).stop)
            action = "not running" if pid is None else "stopped"
            actions.append(ServiceAction(POSTGRES, True, settings.redacted_dsn, action, pid))
    return DownReport(services=actions)


async def status(settings: Settings) -> StatusReport:
    """Whether each service is local or external, where it is, and whether it answers."""
    kafka_state, postgres_state = await asyncio.gather(
        _kafka_status(settings), _postgres_status(settings)
    )
    return StatusReport(services=[kafka_state, postgres_state])


async def _kafka_status(settings: Settings) -> ServiceState:
    if settings.kafka_is_external:
        answering = await kafka_answers(settings.bootstrap_servers, _PROBE_TIMEOUT_S)
        where = settings.bootstrap_servers
        return ServiceState(KAFKA, False, where, answering, answering)
    nodes = local_nodes(settings)
    pids = [node.pid() for node in nodes]
    running = all(pid is not None for pid in pids)
    where = settings.bootstrap_servers
    answering = running and await kafka_answers(where, _PROBE_TIMEOUT_S)
    detail = f"files in {nodes[0].paths.root}"
    if len(nodes) > 1:
        up = sum(pid is not None for pid in pids)
        detail = f"{up} of {len(nodes)} nodes running; files in {nodes[0].paths.root}[-N]"
    return ServiceState(KAFKA, True, where, running, answering, pids[0], detail)


async def _postgres_status(settings: Settings) -> ServiceState:
    where = settings.redacted_dsn
    if settings.postgres_is_external:
        problem = await postgres_problem(settings.dsn, _PROBE_TIMEOUT_S)
        return ServiceState(POSTGRES, False, where, problem is None, problem is None,
                            detail=problem or "")  # fmt: skip
    local = LocalPostgres(settings)
    pid = local.pid()
    problem = await postgres_problem(settings.dsn, _PROBE_TIMEOUT_S) if pid else "not running"
    detail = f"files in {local.paths.root}" + (f"; {problem}" if pid and problem else "")
    return ServiceState(POSTGRES, True, where, pid is not None, problem is None, pid, detail)
