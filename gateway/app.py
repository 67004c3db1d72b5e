"""The gateway's ASGI app: ``create_app(settings, options)`` (``logflume gateway`` serves it).

At start-up the lifespan opens the PostgreSQL pool (keys, Maxim nodes, the read side), two
Kafka transports and spools (events to the raw topic; the gateway's own dead letters to the
dead-letter topic, :mod:`gateway.deadletters`) with a :class:`~gateway.publisher.Publisher`
each, the spool of work deferred while PostgreSQL is away (:mod:`gateway.deferred`), and
starts the sweeper of held Maxim lines and deferred work (:mod:`gateway.release`); at
shutdown it answers what is in flight (sent or spooled) and closes them. Tests pass
:class:`Components` to run the same app over in-memory twins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import codec
from fastapi import FastAPI

from kernel.settings import GatewaySettings, Settings
from producers.sdk import KafkaTransport, MemoryTransport, SDKSettings, Spool, Transport

from .auth import KeyStore, PgKeyStore
from .context import Gateway, openapi_schema
from .deadletters import DeadLetters
from .deferred import Deferred
from .errors import JsonResponse, install_handlers
from .held import HeldLines, MemoryHeldLines, PgHeldLines
from .ingest import AcceptedLogs, Ingest
from .log_index import LogIndex, MemoryLogIndex, PgLogIndex
from .metrics import instrument_gateway
from .nodes import NodeIndex, PgNodeIndex
from .outage import DatabaseWatch
from .publisher import Publisher
from .release import sweep_forever
from .routes_delete import delete_router
from .routes_events import events_router
from .routes_humanloop import humanloop_router
from .routes_maxim import maxim_files_router, maxim_router
from .routes_prompts import prompts_router
from .routes_read import read_router
from .store import ReadStore, connect_pool
from .unsaved import MemoryUnsavedIndex, PgUnsavedIndex, UnsavedIndex

__all__ = ["Components", "create_app", "kafka_transport", "open_spool"]

_DESCRIPTION = """\
logflume's HTTP gateway. **Write**: Humanloop-compatible logs (`/v5/prompts/log`,
`/v5/flows/log`, `/v5/tools/log`, `/v5/evaluators/log`, `/logs`),
Maxim-compatible commit lines (`/api/sdk/v3/log`) and the native batch (`/v1/events`); a
2xx means the events are acknowledged by Kafka or durably spooled. **Read**: logs, traces
and sessions as the pipeline stored them. Every request needs an API key (`X-API-KEY`,
`x-maxim-api-key` or `Authorization: Bearer`); a key sees only its project.
"""


@dataclass(slots=True)
class Components:
    """What the gateway runs on; ``create_app`` builds the real ones when not given."""

    transport: Transport
    spool: Spool | None
    keys: KeyStore
    nodes: NodeIndex
    store: ReadStore | None = None
    held: HeldLines = field(default_factory=MemoryHeldLines)
    unsaved: UnsavedIndex = field(default_factory=MemoryUnsavedIndex)
    logs: LogIndex = field(default_factory=MemoryLogIndex)  # Humanloop logs' traces, refs
    # The dead-letter topic's (one record per dead letter, :mod:`gateway.deadletters`).
    dead_letter_transport: Transport = field(default_factory=lambda: MemoryTransport(packed=False))
    dead_letter_spool: Spool | None = None
    # Work deferred while PostgreSQL is unreachable (gateway.deferred); None: answered 503.
    deferred_spool: Spool | None = None
    watch: DatabaseWatch = field(default_factory=DatabaseWatch)


def kafka_transport(
    settings: Settings, options: GatewaySettings, *, dead_letters: bool = False
) -> KafkaTransport:
    """The events' transport (to the raw topic), or with ``dead_letters`` the one of the
    gateway's dead letters (to the dead-letter topic, records not packed)."""
    sdk = SDKSettings(
        bootstrap_servers=settings.bootstrap_servers,
        topic=settings.topics.deadletter if dead_letters else settings.topics.events,
        client_id="logflume-gateway",
        linger_ms=1,
        send_timeout_s=options.send_timeout_s,
        max_request_bytes=settings.max_record_bytes + 64 * 1024,
        max_event_bytes=settings.max_event_bytes,
    )
    compression = "zstd" if codec.has_zstd() else None
    return KafkaTransport(sdk, compression=compression, packed=not dead_letters)


def open_spool(
    settings: Settings,
    options: GatewaySettings,
    *,
    dead_letters: bool = False,
    deferred: bool = False,
) -> Spool:
    """The events' spool, or with ``dead_letters`` the dead letters' (its ``deadletter``
    folder), or with ``deferred`` the work waiting for PostgreSQL (its ``deferred`` folder)."""
    root = options.spool_dir or settings.home.expanduser() / "gateway-spool"
    if dead_letters:
        root = root / "deadletter"
    elif deferred:
        root = root / "deferred"
    return Spool(
        root, max_bytes=options.spool_max_bytes, segment_bytes=16 * 1024 * 1024, fsync="batch"
    )


def create_app(
    settings: Settings, options: GatewaySettings, components: Components | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = None
        parts = components
        if parts is None:
            pool = await connect_pool(
                settings.dsn, max_size=options.db_pool_max, timeout_s=options.db_timeout_s
            )
            watch = DatabaseWatch()
            timeout_s = options.db_timeout_s
            parts = Components(
                transport=kafka_transport(settings, options),
                spool=open_spool(settings, options),
                keys=PgKeyStore(
                    pool, ttl_s=options.key_cache_ttl_s, timeout_s=timeout_s, watch=watch
                ),
                nodes=PgNodeIndex(pool, cache_size=options.node_cache_size,
                                  timeout_s=timeout_s, watch=watch),
                store=ReadStore(pool, timeout_s=timeout_s),
                held=PgHeldLines(pool, timeout_s=timeout_s),
                unsaved=PgUnsavedIndex(pool, timeout_s=timeout_s, watch=watch),
                logs=PgLogIndex(pool, timeout_s=timeout_s, watch=watch),
                dead_letter_transport=kafka_transport(settings, options, dead_letters=True),
                dead_letter_spool=open_spool(settings, options, dead_letters=True),
                deferred_spool=open_spool(settings, options, deferred=True),
                watch=watch,
            )  # fmt: skip

        def publisher_for(transport: Transport, spool: Spool | None) -> Publisher:
            publisher = Publisher(
                transport, spool, linger_s=options.linger_ms / 1000,
                max_events=options.publish_max_events, send_timeout_s=options.send_timeout_s,
                backoff_max_s=options.retry_backoff_max_s,
            )  # fmt: skip
            publisher.start()
            return publisher

        publisher = publisher_for(parts.transport, parts.spool)
        letters = DeadLetters(
            publisher_for(parts.dead_letter_transport, parts.dead_letter_spool),
            settings.max_record_bytes,
        )
        accepted = AcceptedLogs(options.accepted_capacity, options.accepted_ttl_s)
        ingest = Ingest(publisher, accepted, settings.max_event_bytes, parts.unsaved)
        app.state.keys = parts.keys
        deferred = Deferred(parts.deferred_spool)
        gateway = Gateway(settings, options, ingest, parts.store, parts.nodes, parts.held, letters,
                          deferred, parts.watch, parts.logs)  # fmt: skip
        app.state.gateway = gateway
        sweeper = None
        if options.held_sweep_s > 0:
            sweeper = asyncio.create_task(
                sweep_forever(
                    gateway,
                    interval_s=options.held_sweep_s,
                    ttl_s=options.held_ttl_s,
                    unsaved_ttl_s=options.unsaved_ttl_s,
                )
            )
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await asyncio.gather(publisher.close(), letters.publisher.close())
            deferred.close()
            if pool is not None:
                await pool.close()

    app = FastAPI(
        title="logflume gateway",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    install_handlers(app)
    app.include_router(humanloop_router)
    app.include_router(humanloop_router, prefix="/v5")
    app.include_router(prompts_router)
    app.include_router(prompts_router, prefix="/v5")
    app.include_router(maxim_router)
    app.include_router(maxim_files_router)
    app.include_router(events_router)
    app.include_router(read_router)
    app.include_router(delete_router)
    app.include_router(delete_router, prefix="/v5")

    @app.get("/healthz", tags=["ops"], summary="Liveness and the publisher's state")
    async def healthz() -> dict[str, Any]:
        gateway: Gateway = app.state.gateway
        publisher = gateway.ingest.publisher
        stats = publisher.stats
        return {
            "status": "ok",
            "kafka": "healthy" if publisher.healthy else "spooling",
            "sent": stats.sent,
            "spooled": stats.spooled,
            "resent": stats.resent,
            "pending_logs": len(gateway.ingest.accepted),
            "postgres": "unreachable" if gateway.watch.down else "ok",
            "deferred": gateway.deferred.has_unsent(),
        }

    instrument_gateway(app)  # request metrics and GET /metrics
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    return app
