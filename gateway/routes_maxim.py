"""Maxim-compatible endpoints: what ``maxim-py``'s Logger calls when its ``base_url`` points
here. ``GET /api/sdk/v3/log-repositories`` tells the SDK its repository exists (any logger
id: the API key's project is where everything goes); ``POST /api/sdk/v3/log`` takes the
commit lines (:mod:`gateway.maxim`).

A file attachment's bytes are never kept (they would have no place in Kafka): the SDK asks
``GET /api/sdk/v1/log-repositories/attachments/upload-url`` where to upload a file and says
its key, MIME type and size, which become an ``add-attachment`` line of the attachment's
node (its own later ``add-attachment`` line adds the name and type); the URL answered is
``PUT .../attachments/upload``, which reads the bytes and discards them. A key whose node
or file id breaks the contract's id rule is a 400 (never looked up in PostgreSQL).

The answer is 200 once every line is kept: its event acknowledged by Kafka or spooled (or,
for a line whose span or generation is not known yet, held in Postgres, or on the local
disk while Postgres is unreachable: :mod:`gateway.release`), and every line that becomes no
event (not modelled, malformed or refused by the contract) published the same way as a dead
letter (:mod:`gateway.deadletters`).
Those are counted in ``data.dead_lettered`` (``entity:action``), the refused ones also
listed under ``data.rejected`` rather than as an ``error``: the SDK re-sends a whole batch on
an error, which would not make such a line valid. 400 / 422 (bad input: ``message`` is
``field: reason; ...``, ``errors`` lists them), 413 / 503 / 401 come as
``{"error": {"message"}}`` (:class:`gateway.errors.MaximError`, where maxim-py's parsing is
cited), which the SDK reports (and, for 503, keeps the batch on disk and retries).
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request

from producers.contract import FieldError

from .auth import Project
from .context import GatewayDep, body_doc, read_body
from .errors import JsonResponse, MaximError
from .ids import id_problem
from .maxim import (
    encode_translated,
    not_modelled,
    parse_lines,
    referenced_nodes,
    refused,
    translate,
)
from .outage import UNAVAILABLE
from .release import hold, release
from .schemas import MaximAnswer, MaximErrorAnswer

__all__ = ["maxim_files_router", "maxim_router"]

log = logging.getLogger(__name__)

# Refusals come in Maxim's shape (gateway.errors.MaximError), FastAPI's 422 included.
_REFUSALS: dict[int | str, dict[str, Any]] = {
    422: {"model": MaximErrorAnswer, "description": "A parameter is invalid (field: reason)"},
    "4XX": {"model": MaximErrorAnswer, "description": "Refused (400, 401, 413)"},
}
maxim_router = APIRouter(prefix="/api/sdk/v3", tags=["maxim"], responses=_REFUSALS)
maxim_files_router = APIRouter(
    prefix="/api/sdk/v1/log-repositories/attachments", tags=["maxim"], responses=_REFUSALS
)
# maxim-py's attachment key: {repository}/{entity}/{entity id}/files/original/{file id}
_ATTACHMENT_KEY = re.compile(
    r"^[^/]*/(?P<entity>[a-z_]+)/(?P<node>[^/]+)/files/original/(?P<file>[^/]+)$"
)


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
        raise MaximError.invalid(400, [FieldError("body", "is not UTF-8")]) from None
    data = {"repository": repository, **await _keep(gw, project, text)}
    return JsonResponse({"data": data})


@maxim_files_router.get("/upload-url", response_model=MaximAnswer)
async def upload_url(
    request: Request,
    gw: GatewayDep,
    project: Project,
    key: Annotated[str, Query(max_length=2048)],
    mime_type: Annotated[str, Query(alias="mimeType", max_length=1024)] = "",
    size: Annotated[int | None, Query(ge=0)] = None,
) -> JsonResponse:
    """Where the SDK uploads a file attachment: its key, MIME type and size are kept on the
    attachment's node (as an ``add-attachment`` line of the node the key names)."""
    match = _ATTACHMENT_KEY.match(key)
    if match is None:
        reason = "is not repository/entity/id/files/original/file"
        raise MaximError.invalid(400, [FieldError("query.key", reason)])
    for part in ("node", "file"):
        problem = id_problem(match[part])
        if problem is not None:  # never looked up or recorded (PostgreSQL cannot hold it)
            reason = f"the {part} id in it is invalid ({problem})"
            raise MaximError.invalid(400, [FieldError("query.key", reason)])
    data = {"id": match["file"], "key": key, "mimeType": mime_type or None, "size": size}
    line = (
        f"{match['entity']}{{id={match['node']},action=add-attachment,"
        f"data={orjson.dumps({k: v for k, v in data.items() if v is not None}).decode()}}}"
    )
    await _keep(gw, project, line)
    url = str(request.url_for("upload_discarded").include_query_params(key=key))
    return JsonResponse({"data": {"url": url}})


@maxim_files_router.put("/upload", name="upload_discarded", include_in_schema=False)
async def upload_discarded(request: Request, gw: GatewayDep) -> JsonResponse:
    """The bytes of a file attachment: read and discarded (never stored, never in Kafka).
    Unauthenticated, as a signed URL is (maxim-py sends no key with the upload), so bounded
    like every body: 413 past the limit (the attachment's metadata is kept already)."""
    limit, size = gw.options.max_body_bytes, 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MaximError(413, f"the upload is over the limit of {limit} bytes")
    return JsonResponse({"data": {"discarded_bytes": size}})


async def _keep(gw: GatewayDep, project: str, text: str) -> dict[str, Any]:
    """Publish, hold or dead-letter every line of ``text`` (see the module docstring);
    what the answer's ``data`` says of them."""
    lines, errors = parse_lines(text)
    received = datetime.now(UTC)
    known = await gw.nodes.traces_of(project, referenced_nodes(lines))
    translation, envelopes = translate(project, lines, known, received)
    refusals = [*errors, *translation.errors]
    accepted, contract_refusals = encode_translated(translation, envelopes, gw.ingest.encode)
    refusals += contract_refusals
    # Order matters (gateway.release): hold, then record, then release both sides.
    held, refused_held = await hold(gw, project, translation.held, received)
    refusals += refused_held
    if translation.nodes:
        await gw.nodes.record(project, translation.nodes)
    kept = [*not_modelled(project, translation.unmodelled),
            *refused(project, lines, refusals, text)]  # fmt: skip
    # A GatewayError (503, 413) is answered in Maxim's shape on these routes (gateway.errors).
    deliveries = await asyncio.gather(gw.ingest.publish(accepted), gw.dead_letters.publish(kept))
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
    return {
        "accepted": len(accepted),
        "held": held,
        "released": released,
        "delivery": "spooled" if "spooled" in deliveries else "sent",
        "dead_lettered": dead_lettered,
        "rejected": rejected,
    }
