"""``logflume delete``: erase logs, traces and sessions from the command line, as the
gateway's ``DELETE`` routes do (:mod:`gateway.deletion` resolves the members from
PostgreSQL; one ``delete`` event per entity is published to the raw topic)."""

from __future__ import annotations

from gateway.app import kafka_transport
from gateway.deletion import Targets, resolve
from gateway.ingest import encode_envelope, envelope
from gateway.log_index import PgLogIndex
from gateway.store import ReadStore, connect_pool
from kernel.settings import Settings

__all__ = ["erase"]


async def erase(
    settings: Settings,
    project: str,
    *,
    log_ids: list[str],
    reference_ids: list[str],
    trace_ids: list[str],
    session_ids: list[str],
) -> Targets:
    """Publish the deletion of the named entities; what was deleted, per kind."""
    pool = await connect_pool(settings.dsn, max_size=2, timeout_s=30)
    try:
        targets = await resolve(
            ReadStore(pool), project, log_ids=log_ids, reference_ids=reference_ids,
            trace_ids=trace_ids, session_ids=session_ids,
        )  # fmt: skip
        logs = [b["id"] for b in targets.bodies.values() if b["kind"] == "log" and "id" in b]
        await PgLogIndex(pool).forget(project, logs)  # the gateways' record of them
    finally:
        await pool.close()
    encoded = [
        encode_envelope(envelope("delete", project, body), settings.max_event_bytes)[1]
        for body in targets.bodies.values()
    ]
    transport = kafka_transport(settings, settings.gateway)
    try:
        await transport.send(encoded)
    finally:
        await transport.close()
    return targets
