"""Humanloop-compatible endpoints: log to a Prompt, the older ``/logs`` log and update,
and reading a log back. Served both at the root and under ``/v5`` (the SDK's base URL).

Logging does not wait for PostgreSQL: when the newest version of a Prompt cannot be looked
up, the log is published without it and answered with ``version_id: null``, and the
lookup is deferred (:mod:`gateway.deferred`); the pipeline merges the version in later.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from processors.entities import prompt_id_for_path, prompt_version_id
from producers.contract import CreateLogResponse, Event, FieldError, LogEvent
from producers.sdk.encoding import Encoded

from . import humanloop
from .auth import Project
from .context import (
    CURSOR_MAX_LENGTH,
    EnvironmentQuery,
    GatewayDep,
    IdPath,
    IdQuery,
    RequiredIdQuery,
    body_doc,
    read_json,
)
from .deferred import VersionToResolve
from .errors import JsonResponse, NotFound, ValidationFailed
from .ingest import envelope
from .log_query import HumanloopLogs
from .outage import UNAVAILABLE
from .schemas import LegacyLogRequest, LogUpdateRequest, PromptLogRequest
from .views import LogPage, LogUpdateAccepted, LogView, log_view, pending_log

__all__ = ["humanloop_router"]

logger = logging.getLogger(__name__)

humanloop_router = APIRouter(tags=["humanloop"])
_PROMPT_FILE = "a .prompt file is not supported here; pass the Prompt's details as an object"
# Contract field -> the name the Humanloop request gave it.
RENAMES = {
    "body.id": "body.log_id",
    "body.prompt_id": "body.id",
    "body.trace_parent_log_id": "body.trace_parent_id",
}


def _object(data: Any, where: str = "body") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError(where, "must be a JSON object")], ())
    return data


def _prompt_id(log: LogEvent) -> str | None:
    body = log.body
    return body.prompt_id or (prompt_id_for_path(body.path) if body.path else None)


async def _version_id(gw: GatewayDep, log: LogEvent, environment: str | None) -> str | None:
    """The version: given, else the hash of the prompt's details (as stage 1 computes it),
    else the newest stored version of the Prompt (in ``environment`` when given)."""
    body = log.body
    if body.version_id:
        return body.version_id
    if body.prompt is not None:
        return prompt_version_id(body.model_dump(mode="json", exclude_unset=True)["prompt"])
    if gw.store is None or _prompt_id(log) is None:
        return None
    gw.watch.check()  # the database failed moments ago: do not wait on it again
    return await gw.store.version_for(log.project, _prompt_id(log), environment)


async def _log(
    gw: GatewayDep, project: str, body: dict[str, Any], environment: str | None, where: list[Any]
) -> tuple[CreateLogResponse, tuple[Event, Encoded], VersionToResolve | None]:
    """Validate one log (resolving its version): the answer, the event to publish, and the
    version to resolve later when PostgreSQL could not be asked now."""
    if isinstance(body.get("prompt"), str):
        raise ValidationFailed([FieldError("body.prompt", _PROMPT_FILE)], where)
    (checked,) = gw.ingest.check([envelope("log", project, body)], where, RENAMES)
    log = checked[0]
    assert isinstance(log, LogEvent)
    later = None
    try:
        version = await _version_id(gw, log, environment)
    except UNAVAILABLE as exc:
        gw.watch.failed("version", exc)
        version = None
        prompt_id = _prompt_id(log)
        if prompt_id is not None:
            later = VersionToResolve(project, log.body.id, log.body.reference_id, prompt_id,
                                     environment)  # fmt: skip
    if version is not None and log.body.version_id is None and log.body.prompt is None:
        body["version_id"] = version  # found by environment: the log belongs to it
        (checked,) = gw.ingest.check([envelope("log", project, body)], where, RENAMES)
        log = checked[0]
        assert isinstance(log, LogEvent)
    answer = CreateLogResponse(
        id=log.body.id, prompt_id=_prompt_id(log), version_id=version,
        session_id=humanloop.session_of(body),
    )  # fmt: skip
    return answer, checked, later


async def _defer_versions(gw: GatewayDep, versions: list[VersionToResolve]) -> None:
    """After the logs are published: keep their version lookups on disk. A failure here
    costs only the version (the logs are in Kafka), so it is logged, not answered."""
    if not versions:
        return
    try:
        await gw.deferred.resolve_versions(versions)
    except Exception as exc:
        logger.warning("could not defer %d prompt-version lookups (%s); those logs keep "
                    "version_id null", len(versions), type(exc).__name__)  # fmt: skip


@humanloop_router.post(
    "/prompts/log",
    response_model=CreateLogResponse,
    summary="Log to a Prompt",
    openapi_extra=body_doc("PromptLogRequest", PromptLogRequest),
)
async def prompts_log(
    request: Request,
    gw: GatewayDep,
    project: Project,
    version_id: IdQuery = None,
    environment: EnvironmentQuery = None,
) -> JsonResponse:
    """Log one LLM call; prompt details create or find the version by content hash."""
    data = _object(await read_json(request, gw.options.max_body_bytes))
    body = humanloop.log_body(data, environment=environment)
    if version_id is not None:
        body["version_id"] = version_id
    answer, checked, later = await _log(gw, project, body, environment, [])
    await gw.ingest.publish([checked])
    await _defer_versions(gw, [later] if later else [])
    return JsonResponse(answer.model_dump(mode="json"))


@humanloop_router.post(
    "/logs",
    response_model=CreateLogResponse | list[CreateLogResponse],
    summary="Log one datapoint or an array of them",
    openapi_extra=body_doc("LegacyLogBody", LegacyLogRequest | list[LegacyLogRequest]),
)
async def post_logs(request: Request, gw: GatewayDep, project: Project) -> JsonResponse:
    data = await read_json(request, gw.options.max_body_bytes)
    items = data if isinstance(data, list) else [data]
    if len(items) > gw.options.max_batch_events:
        raise ValidationFailed(
            [FieldError("body", f"holds {len(items)} logs; at most {gw.options.max_batch_events}")]
        )
    answers: list[CreateLogResponse] = []
    events: list[tuple[Event, Encoded]] = []
    versions: list[VersionToResolve] = []
    for index, item in enumerate(items):
        where: list[Any] = [index] if isinstance(data, list) else []
        request_item = _object(item, f"body[{index}]" if where else "body")
        body = humanloop.legacy_log_body(request_item)
        answer, checked, later = await _log(gw, project, body, None, where)
        answers.append(answer)
        events.append(checked)
        versions += [later] if later else []
        feedback = humanloop.feedback_bodies(request_item, body)
        if feedback:
            envelopes = [envelope("feedback", project, f) for f in feedback]
            events += gw.ingest.check(envelopes, [*where, "feedback"])
    await gw.ingest.publish(events)
    await _defer_versions(gw, versions)
    payload = [a.model_dump(mode="json") for a in answers]
    return JsonResponse(payload if isinstance(data, list) else payload[0])


async def _update(
    request: Request, gw: GatewayDep, project: str, log_id: str | None, reference_id: str | None
) -> JsonResponse:
    data = _object(await read_json(request, gw.options.max_body_bytes))
    body = humanloop.update_body(data, log_id=log_id, reference_id=reference_id)
    await gw.ingest.accept_all([envelope("log_update", project, body)], RENAMES)
    if log_id is None and reference_id is not None and gw.store is not None:
        try:
            gw.watch.check()
            stored = await gw.store.log_by_reference(project, reference_id)
        except UNAVAILABLE as exc:  # the update is published: answer what this process knows
            gw.watch.failed("reference", exc)
            stored = None
        log_id = (
            stored["id"] if stored else gw.ingest.accepted.log_for_reference(project, reference_id)
        )
    answer = LogUpdateAccepted(id=log_id, reference_id=reference_id, updated_at=datetime.now(UTC))
    return JsonResponse(answer.model_dump(mode="json"))


@humanloop_router.patch(
    "/logs",
    response_model=LogUpdateAccepted,
    summary="Update a logged datapoint by its reference ID",
    openapi_extra=body_doc("LogUpdateRequest", LogUpdateRequest),
)
async def patch_log_by_reference(
    request: Request,
    gw: GatewayDep,
    project: Project,
    reference_id: RequiredIdQuery,
) -> JsonResponse:
    """Set fields of the log with this reference id; sent before the log, it still merges."""
    return await _update(request, gw, project, None, reference_id)


@humanloop_router.patch(
    "/logs/{id:path}",
    response_model=LogUpdateAccepted,
    summary="Update a log by its id",
    openapi_extra=body_doc("LogUpdateRequest", LogUpdateRequest),
)
async def patch_log(request: Request, gw: GatewayDep, project: Project, id: IdPath
                    ) -> JsonResponse:  # fmt: skip
    return await _update(request, gw, project, id, None)


@humanloop_router.patch(
    "/prompts/{prompt_id:path}/log/{id:path}",
    response_model=LogUpdateAccepted,
    summary="Update a Prompt's log (the Humanloop SDK's prompts.update_log)",
    openapi_extra=body_doc("LogUpdateRequest", LogUpdateRequest),
)
async def patch_prompt_log(
    request: Request, gw: GatewayDep, project: Project, prompt_id: IdPath, id: IdPath
) -> JsonResponse:
    return await _update(request, gw, project, id, None)


async def find_log(gw: GatewayDep, project: str, log_id: str) -> LogView:
    """The stored log; ``pending`` while accepted but not stored yet; else 404."""
    store = gw.store
    row = await store.log(project, log_id) if store is not None else None
    if row is None:
        accepted = gw.ingest.accepted.get(project, log_id)
        if accepted is None:
            raise NotFound(f"no log {log_id!r}")
        (reference_id,) = accepted
        if reference_id is not None and store is not None:
            row = await store.log_by_reference(project, reference_id)  # merged into another id
        if row is None:
            return pending_log(log_id, reference_id)
    assert store is not None
    feedback = await store.feedback(project, row["id"], row.get("reference_id"))
    return log_view(row, feedback)


@humanloop_router.get("/logs/{id:path}", response_model=LogView, summary="Retrieve a log by log id")
async def get_log(gw: GatewayDep, project: Project, id: IdPath) -> JsonResponse:
    view = await find_log(gw, project, id)
    return JsonResponse(view.model_dump(mode="json", exclude_none=False))


@humanloop_router.get("/logs", response_model=LogPage, summary="List logs, newest first")
async def list_logs(
    gw: GatewayDep,
    project: Project,
    humanloop: HumanloopLogs,
    reference_id: IdQuery = None,
    session_id: IdQuery = None,
    trace_id: IdQuery = None,
    version_id: IdQuery = None,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JsonResponse:
    """Keyset pagination by time (``created_at``, else when stored): pass ``next_cursor``.
    With ``page`` (what Humanloop's ``logs.list`` sends), numbered pages of ``size`` with
    the ``total``, and Humanloop's filters (``file_id``: the Prompt)."""
    from .store import Cursor

    store = gw.store
    if store is None:
        raise NotFound("no read store")
    equal = {k: v for k, v in (("reference_id", reference_id), ("session_id", session_id),
             ("trace_id", trace_id), ("version_id", version_id),
             ("prompt_id", humanloop.file_id)) if v is not None}  # fmt: skip
    filters = humanloop.log_filter(equal)
    if humanloop.page is not None:
        if cursor is not None:
            raise ValidationFailed([FieldError("query.cursor", "cannot be given with page")])
        size = min(humanloop.size, gw.options.list_limit_max)
        numbered, total = await store.logs_numbered_page(
            project, page=humanloop.page, size=size, filters=filters
        )
        page = {"records": [log_view(row).model_dump(mode="json") for row in numbered],
                "page": humanloop.page, "size": size, "total": total}  # fmt: skip
        return JsonResponse(page)
    rows, next_cursor = await store.logs_page(
        project, limit=min(limit, gw.options.list_limit_max),
        cursor=Cursor.decode(cursor) if cursor else None, filters=filters,
    )  # fmt: skip
    records = [log_view(row) for row in rows]
    if not records and reference_id is not None and cursor is None:
        log_id = gw.ingest.accepted.log_for_reference(project, reference_id)
        if log_id is not None:
            records = [pending_log(log_id, reference_id)]
    page = {"records": [r.model_dump(mode="json") for r in records],
            "next_cursor": next_cursor.encode() if next_cursor else None}  # fmt: skip
    return JsonResponse(page)
