"""Maxim-compatible endpoints: what ``maxim-py``'s Logger calls when its ``base_url`` points
here. ``GET /api/sdk/v3/log-repositories`` tells the SDK its repository exists (any logger
id: the API key's project is where everything goes); ``POST /api/sdk/v3/log`` takes the
commit lines (:mod:`gateway.maxim`).

The answer is 200 once every translatable line is acknowledged by Kafka or spooled, with
the lines that could not be used listed under ``data.rejected`` rather than as an
``error``: the SDK re-sends a whole batch on an error, which would not make such a line
valid. 413 / 503 / 401 come as ``{"error": {"message"}}``, which the SDK reports (and, for
503, keeps the batch on disk and retries).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from producers.contract import ContractError

from .auth import Project
from .context import GatewayDep, body_doc, read_body
from .errors import GatewayError, JsonResponse, MaximError
from .maxim import parse_lines, referenced_nodes, translate
from .schemas import MaximAnswer

__all__ = ["maxim_router"]

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
    known = await gw.nodes.traces_of(project, referenced_nodes(lines))
    translation, envelopes = translate(project, lines, known, datetime.now(UTC))
    rejected = [{"line": index, "field": e.field, "reason": e.reason}
                for index, e in [*errors, *translation.errors]]  # fmt: skip
    accepted = []
    for (index, _, _), item in zip(translation.events, envelopes, strict=True):
        try:
            accepted.append(gw.ingest.encode(item))
        except ContractError as exc:
            rejected += [{"line": index, "field": e.field, "reason": e.reason} for e in exc.errors]
    if translation.nodes:
        await gw.nodes.record(project, translation.nodes)
    try:
        delivery = await gw.ingest.publish(accepted)
    except GatewayError as exc:
        raise MaximError(exc.status, exc.message) from None
    data = {
        "repository": repository,
        "accepted": len(accepted),
        "delivery": delivery,
        "ignored": translation.ignored,
        "rejected": sorted(rejected, key=lambda r: r["line"]),  # type: ignore[arg-type,return-value]
    }
    return JsonResponse({"data": data})
