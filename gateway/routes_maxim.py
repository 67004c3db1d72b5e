"""Maxim-compatible endpoints: what ``maxim-py``'s Logger calls when its ``base_url`` points
here. ``GET /api/sdk/v3/log-repositories`` tells the SDK its repository exists (any logger
id: the API key's project is where everything goes); ``POST /api/sdk/v3/log`` takes the
commit lines (:mod:`gateway.maxim`).

The answer is 200 once every line is kept: its event acknowledged by Kafka or spooled (or,
for a line whose span or generation is not known yet, held in Postgres, or on the local
disk while Postgres is unreachable: :mod:`gateway.release`), and every line that becomes no
event (not modelled, malformed or refused by the contract) published the same way as a dead
letter (:mod:`gateway.deadletters`).
Those are counted in ``data.dead_lettered`` (``entity:action``), the refused ones also
listed under ``data.rejected`` rather than as an ``error``: the SDK re-sends a whole batch on
an error, which would not make such a line valid. 413 / 503 / 401 come as
``{"error": {"message"}}``, which the SDK reports (and, for 503, keeps the batch on disk and
retries).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from producers.contract import ContractError

from .auth import Project
from .context import GatewayDep, body_doc, read_body
from .errors import GatewayError, JsonResponse, MaximError
from .maxim import not_modelled, parse_lines, referenced_nodes, refused, translate
from .outage import UNAVAILABLE
from .release import hold, release
from .schemas import MaximAnswer

__all__ = ["maxim_router"]

log = logging.getLogger(__name__)

maxim_router = APIRouter(prefix="/api/sdk/v3", tags=["maxim"])


@maxim_router.get("/log-repositories", response_model=MaximAnswer)
async def log_repository(
    project: Project, logger_id: Annotated[str, Query(alias="loggerId", max_length=256)]
) -> JsonResponse:
    """The SDK checks its log repository once at start; every logger id maps to the key's
    project."""
    return JsonResponse({"data": {"id": logger_id, "project": project}})


@maxim_router.post(
    "/log",
    response_model=MaximAnswer,
    openapi_extra=body_doc("MaximCommitLines", str, "text/plain"),
)
async def push_logs(
    request: Request,
    gw: GatewayDep,
    project: Project,
    repository: Annotated[str, Query(alias="id", max_length=256)],
) -> JsonResponse:
    """Newline-separated ``entity{id=...,action=...,data={...}}`` commit lines."""
    try:
        raw = await read_body(request, gw.options.max_body_bytes)
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MaximError(400, "the body is not UTF-8") from None
    except GatewayError as exc:
        raise MaximError(exc.status, exc.message) from None
    lines, errors = parse_lines(text)
    received = datetime.now(UTC)
    known = await gw.nodes.traces_of(project, referenced_nodes(lines))
    translation, envelopes = translate(project, lines, known, received)
    refusals = [*errors, *translation.errors]
    accepted = []
    for (index, _, _), item in zip(translation.events, envelopes, strict=True):
        try:
            accepted.append(gw.ingest.encode(item))
        except ContractError as exc:
            refusals += [(index, e) for e in exc.errors]
    # Order matters (gateway.release): hold, then record, then release both sides.
    held, refused_held = await hold(gw, project, translation.held, received)
    refusals += refused_held
    if translation.nodes:
        await gw.nodes.record(project, translation.nodes)
    kept = [*not_modelled(project, translation.unmodelled),
            *refused(project, lines, refusals, text)]  # fmt: skip
    try:
        deliveries = await asyncio.gather(
            gw.ingest.publish(accepted), gw.dead_letters.publish(kept)
        )
    except GatewayError as exc:
        raise MaximError(exc.status, exc.message) from None
    waiting = {line.entity_id for line in translation.held}
    try:
        gw.watch.check()
        released = await release(gw, project, [*translation.nodes, *waiting])
    except UNAVAILABLE as exc:  # PostgreSQL away: the lines are held; the sweeper releases
        gw.watch.failed("maxim_release", exc)
        released = 0
    except Exception as exc:  # this request's lines are safe; the sweeper retries the held
        log.warning("releasing held Maxim lines failed (%s); the sweeper retries",
                    type(exc).__name__)  # fmt: skip
        released = 0
    rejected = [{"line": index, "field": e.field, "reason": e.reason}
                for index, e in sorted(refusals, key=lambda r: r[0])]  # fmt: skip
    dead_lettered: dict[str, int] = {}
    for k in kept:
        name = f"{k.labels[0]}:{k.labels[1]}"
        dead_lettered[name] = dead_lettered.get(name, 0) + 1
    data = {
        "repository": repository,
        "accepted": len(accepted),
        "held": held,
        "released": released,
        "delivery": "spooled" if "spooled" in deliveries else "sent",
        "dead_lettered": dead_lettered,
        "rejected": rejected,
    }
    return JsonResponse({"data": data})
