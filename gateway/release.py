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
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from datetime import datetime

from producers.contract import ContractError, FieldError

from .context import Gateway
from .held import HeldLine
from .maxim import CommitLine, event_id, not_modelled, parse_lines, refused, translate

__all__ = ["hold", "release", "sweep", "sweep_forever"]

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
    await gw.held.hold(keep)
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
        for node, (_, trace) in translation.nodes.items():
            trace_of[node] = trace
        created.update(translation.nodes)
        refusals = list(translation.errors)
        for (index, _, _), item in zip(translation.events, envelopes, strict=True):
            try:
                accepted.append(gw.ingest.encode(item))
            except ContractError as exc:  # checked when held; a contract change since then
                refusals += [(index, e) for e in exc.errors]
        kept += [*not_modelled(project, translation.unmodelled),
                 *refused(project, lines, refusals)]  # fmt: skip
    if created:
        await gw.nodes.record(project, created)
    await asyncio.gather(gw.ingest.publish(accepted), gw.dead_letters.publish(kept))
    return created


async def sweep(
    gw: Gateway, *, ttl_s: float, unsaved_ttl_s: float | None = None, limit: int = 1000
) -> tuple[int, int]:
    """Release what became resolvable and expire what waited too long:
    ``(released, expired)``. Also forgets the save=false handles and the Humanloop log
    index's rows older than ``unsaved_ttl_s`` (:mod:`gateway.unsaved`,
    :mod:`gateway.log_index`; by then the pipeline stored their logs)."""
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
    """:func:`sweep` every ``interval_s`` until cancelled; a failed sweep is retried."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sweep(gw, ttl_s=ttl_s, unsaved_ttl_s=unsaved_ttl_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Postgres or Kafka away: the next sweep retries
            log.warning("sweep of held Maxim lines failed (%s); retrying", type(exc).__name__)
