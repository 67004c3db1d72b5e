"""Hold Maxim lines whose node is not known yet, and publish them once it is.

:func:`hold` checks a line against the contract as it will be published (its trace id
stands in) and stores the valid ones (:mod:`gateway.held`) before the gateway answers, so
the 200 promise holds. :func:`release` runs after a request has recorded its nodes: it
claims the lines waiting for them, translates them exactly as if they had arrived in order
(same event id, same ``ts`` from their own request's arrival), publishes them, and repeats
for the nodes those lines create (a held ``add-generation`` frees its generation's result).

A request that recorded a node and a request that held a line for it can pass each other:
the holder therefore releases its own held nodes too, after holding. Whichever runs its
claim second sees both the node and the line. :func:`sweep` is the safety net for the
rest (a claim whose publish failed, a node stored by the pipeline from another producer)
and moves lines whose node never came to ``dead_letters``.

While PostgreSQL is unreachable, :func:`hold` keeps the lines in the gateway's local spool
(:mod:`gateway.deferred`) instead; once the database answers, the sweep writes the nodes
and ``save=false`` handles recorded meanwhile, moves the spooled lines into the table
(:func:`drain_deferred`, which also resolves deferred prompt versions) and releases them
as usual.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from producers.contract import ContractError, Event, FieldError
from producers.sdk.encoding import Encoded

from .context import Gateway
from .deferred import VersionToResolve
from .held import HeldLine
from .ingest import now_iso
from .maxim import (
    CommitLine,
    encode_translated,
    event_id,
    not_modelled,
    parse_lines,
    refused,
    translate,
)
from .outage import UNAVAILABLE

__all__ = ["drain_deferred", "hold", "release", "sweep", "sweep_forever", "version_event"]

log = logging.getLogger(__name__)

_STAND_IN_TRACE = "held"  # any valid trace id: only the line's own fields are checked


async def hold(
    gw: Gateway, project: str, lines: list[CommitLine], received: datetime
) -> tuple[int, list[tuple[int, FieldError]]]:
    """Store the lines that would be valid events once their node is known: how many,
    and the refusals of the others (as they would have been had they arrived in order)."""
    stand_in = {line.entity_id: _STAND_IN_TRACE for line in lines}
    translation, envelopes = translate(project, lines, stand_in, received)
    refused = list(translation.errors)
    invalid: set[int] = {index for index, _ in refused}
    for (index, _, _), item in zip(translation.events, envelopes, strict=True):
        try:
            gw.ingest.encode(item)
        except ContractError as exc:
            refused += [(index, e) for e in exc.errors]
            invalid.add(index)
    keep = [
        HeldLine(project, event_id(project, line), line.entity_id, line.text, line.index, received)
        for line in lines
        if line.index not in invalid
    ]
    if not keep:
        return 0, refused
    try:
        gw.watch.check()
        await gw.held.hold(keep)
    except UNAVAILABLE as exc:  # on the local disk until the table can take them
        gw.watch.failed("maxim_hold", exc)
        await gw.deferred.hold(keep)  # 503 when the spool cannot take them either
    return len(keep), refused


async def release(gw: Gateway, project: str, node_ids: Iterable[str]) -> int:
    """Publish the held lines of ``node_ids`` that are known now; how many were released."""
    pending = set(node_ids)
    released = 0
    while pending:
        known = await gw.nodes.traces_of(project, pending)
        if not known:
            break
        async with gw.held.claim(project, known) as claimed:
            if not claimed:
                break
            created = await _publish_claimed(gw, project, claimed, known)
        released += len(claimed)
        pending = set(created)
    return released


async def _publish_claimed(
    gw: Gateway, project: str, claimed: list[HeldLine], known: dict[str, str]
) -> dict[str, tuple[str, str]]:
    """Translate the lines request by request, in their order; record the nodes they
    create and publish their events. Raises (and so keeps them held) when publishing fails."""
    trace_of = dict(known)
    created: dict[str, tuple[str, str]] = {}
    accepted = []
    kept = []  # what becomes no event now (held before a change of contract or translator)
    by_request: dict[datetime, list[CommitLine]] = {}
    for held in sorted(claimed, key=lambda h: (h.received_at, h.line_index)):
        parsed, _ = parse_lines(held.line)
        line = dataclasses.replace(parsed[0], index=held.line_index)
        by_request.setdefault(held.received_at, []).append(line)
    for received, lines in by_request.items():
        translation, envelopes = translate(project, lines, trace_of, received)
        # (checked when held: a refusal here is a change of contract since then)
        encoded, refusals = encode_translated(translation, envelopes, gw.ingest.encode)
        accepted += encoded
        refusals = [*translation.errors, *refusals]
        for node, (_, trace) in translation.nodes.items():
            trace_of[node] = trace
        created.update(translation.nodes)
        kept += [*not_modelled(project, translation.unmodelled),
                 *refused(project, lines, refusals)]  # fmt: skip
    if created:
        await gw.nodes.record(project, created)
    await asyncio.gather(gw.ingest.publish(accepted), gw.dead_letters.publish(kept))
    return created


def version_event(item: VersionToResolve, version_id: str) -> dict[str, Any]:
    """The ``log`` event that gives a log its resolved version: the log's identity (so
    the same routing key and state) and ``version_id``, nothing else. Its id is derived from
    the log and the version, so a chunk drained twice publishes the same event."""
    digest = hashlib.sha256(f"{item.project}\n{item.log_id}\n{version_id}".encode())
    body: dict[str, Any] = {"id": item.log_id, "version_id": version_id}
    if item.reference_id is not None:
        body["reference_id"] = item.reference_id
    return {"event_id": f"evt_v{digest.hexdigest()[:32]}", "type": "log", "ts": now_iso(),
            "project": item.project, "body": body}  # fmt: skip


async def drain_deferred(gw: Gateway) -> int:
    """Move the work deferred while PostgreSQL was away on (:mod:`gateway.deferred`): held
    Maxim lines into ``gateway_held_lines``, prompt versions resolved and published. A
    chunk is acknowledged only once all of it is done; raises (the chunk is read again by
    the next sweep) while the database or Kafka is still away. How many items."""
    done = 0
    while (items := await gw.deferred.read()) is not None:
        if items.held:
            await gw.held.hold(items.held)
        events: list[tuple[Event, Encoded]] = []
        for item in items.versions:
            version = None
            if gw.store is not None:
                version = await gw.store.version_for(item.project, item.prompt_id,
                                                     item.environment)  # fmt: skip
            if version is not None:
                events.append(gw.ingest.encode(version_event(item, version)))
        if events:
            await gw.ingest.publish(events)
        gw.deferred.ack(items)
        done += len(items.held) + len(items.versions)
        if not items.chunk.events:
            break
    if done:
        log.info("released %d items the gateway deferred while PostgreSQL was away", done)
    return done


async def sweep(
    gw: Gateway, *, ttl_s: float, unsaved_ttl_s: float | None = None, limit: int = 1000
) -> tuple[int, int]:
    """Release what became resolvable and expire what waited too long:
    ``(released, expired)``. First writes what was deferred while PostgreSQL was away
    (nodes, save=false handles, held lines, versions). Also forgets the save=false handles
    and the Humanloop log index's rows older than ``unsaved_ttl_s`` (:mod:`gateway.unsaved`,
    :mod:`gateway.log_index`; by then the pipeline stored their logs)."""
    await gw.nodes.flush()
    await gw.ingest.unsaved.flush()
    await gw.logs.flush()
    await drain_deferred(gw)
    by_project: dict[str, list[str]] = {}
    for node in await gw.held.resolvable(limit):
        by_project.setdefault(node.project, []).append(node.node_id)
    released = 0
    for project, ids in by_project.items():
        released += await release(gw, project, ids)
    expired = await gw.held.expire(ttl_s)
    if unsaved_ttl_s is not None:
        await gw.ingest.unsaved.expire(unsaved_ttl_s)
        await gw.logs.expire(unsaved_ttl_s)  # by then, as the handles, stored in `logs`
    if expired:
        log.warning("%d held Maxim lines expired into dead_letters (their node never came)",
                    expired)  # fmt: skip
    return released, expired


async def sweep_forever(
    gw: Gateway, *, interval_s: float, ttl_s: float, unsaved_ttl_s: float | None = None
) -> None:
    """:func:`sweep` every ``interval_s`` until cancelled; a failed sweep is retried. A
    sweep that could not reach PostgreSQL marks it away, one that went through marks it back
    (:class:`~gateway.outage.DatabaseWatch` logs each change once)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sweep(gw, ttl_s=ttl_s, unsaved_ttl_s=unsaved_ttl_s)
        except asyncio.CancelledError:
            raise
        except UNAVAILABLE as exc:  # the database is away: the next sweep retries
            gw.watch.failed("sweep", exc)
        except Exception as exc:  # Kafka away, or worse: the next sweep retries
            log.warning("sweep of held Maxim lines failed (%s); retrying", type(exc).__name__)
        else:
            gw.watch.answered()
