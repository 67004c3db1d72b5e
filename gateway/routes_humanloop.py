"""Humanloop-compatible endpoints: log to a Prompt, a Flow, a Tool or an Evaluator, the
older ``/logs`` log and update, the updates of each log kind, and reading a log back (with
its evaluator logs as judgments). Served both at the root and under ``/v5`` (the SDK's base
URL).

A log with a ``trace_parent_id`` joins its parent's trace: the gateway sets its
``trace_id`` to the trace's root (a Flow log that opened it), found in its log index
(:mod:`gateway.log_index`), which it writes before answering.

Logging does not wait for PostgreSQL: when the newest version of a Prompt cannot be looked
up, the log is published without it and answered with ``version_id: null``, and the
lookup is deferred (:mod:`gateway.deferred`); the pipeline merges the version in later.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from producers.contract import ContractError, CreateLogResponse, Event, FieldError, LogEvent
from producers.contract.ids import file_id_for_path, file_version_id
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
from .log_index import LogPlace
from .log_query import HumanloopLogs
from .outage import UNAVAILABLE
from .schemas import (
    EvaluatorLogRequest,
    FlowLogRequest,
    LegacyLogRequest,
    LogUpdateRequest,
    PromptLogRequest,
    ToolLogRequest,
)
from .views import (
    CreateKindLogResponse,
    LogPage,
    LogUpdateAccepted,
    LogView,
    log_view,
    pending_log,
)

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


# Contract fields a Humanloop request has no name for: the route says which kind it logs.
_NOT_HUMANLOOP = ("log_kind", "file")


def _object(data: Any, where: str = "body") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError(where, "must be a JSON object")], ())
    extra = [FieldError(f"{where}.{name}", "is not a field of this request")
             for name in _NOT_HUMANLOOP if name in data]  # fmt: skip
    if extra:
        raise ValidationFailed(extra, ())
    return data


def _prompt_id(log: LogEvent) -> str | None:
    """The id of the log's File (a Prompt's, Flow's, Tool's or Evaluator's)."""
    body = log.body
    return body.prompt_id or (file_id_for_path(body.log_kind, body.path) if body.path else None)


async def _version_id(gw: GatewayDep, log: LogEvent, environment: str | None) -> str | None:
    """The version: given, else the hash of the File's details (as stage 1 computes it),
    else the newest stored version of the Prompt (in ``environment`` when given)."""
    body = log.body
    if body.version_id:
        return body.version_id
    details = body.model_dump(mode="json", include={"prompt", "file"}, exclude_unset=True)
    if details:
        return file_version_id(body.log_kind, details.get("prompt") or details["file"])
    if gw.store is None or body.log_kind not in (None, "prompt") or _prompt_id(log) is None:
        return None
    gw.watch.check()  # the database failed moments ago: do not wait on it again
    return await gw.store.version_for(log.project, _prompt_id(log), environment)


async def _join_trace(gw: GatewayDep, project: str, body: dict[str, Any]) -> None:
    """A log nested under a parent log joins the parent's trace: ``trace_id`` is the trace's
    root (the parent's own trace, else the parent itself)."""
    parent = body.get("trace_parent_log_id")
    if not isinstance(parent, str) or body.get("trace_id") is not None:
        return
    place = (await gw.logs.places(project, [parent])).get(parent)
    body["trace_id"] = place.trace_id if place is not None and place.trace_id else parent


async def _log(
    gw: GatewayDep,
    project: str,
    body: dict[str, Any],
    environment: str | None,
    where: list[Any],
    renames: dict[str, str] = RENAMES,
) -> tuple[CreateLogResponse, tuple[Event, Encoded], VersionToResolve | None]:
    """Validate one log (resolving its version and its trace): the answer, the event to
    publish, and the version to resolve later when PostgreSQL could not be asked now. A log
    in a trace or with a reference id is recorded in the log index."""
    if isinstance(body.get("prompt"), str):
        raise ValidationFailed([FieldError("body.prompt", _PROMPT_FILE)], where)
    (checked,) = gw.ingest.check([envelope("log", project, body)], where, renames)
    await _join_trace(gw, project, body)
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
        body["version_id"] = version  # found by environment or from the File's details
    if body.get("version_id") != log.body.version_id or body.get("trace_id") != log.body.trace_id:
        (checked,) = gw.ingest.check([envelope("log", project, body)], where, renames)
        log = checked[0]
        assert isinstance(log, LogEvent)
    if log.body.trace_id is not None or log.body.reference_id is not None:
        place = LogPlace(log.body.id, log.body.trace_id, log.body.reference_id)
        await gw.logs.record(project, [place])
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


async def _file_log(
    request: Request,
    gw: GatewayDep,
    project: str,
    kind: str,
    version_id: str | None,
    environment: str | None,
) -> JsonResponse:
    """Log to a Prompt, a Flow, a Tool or an Evaluator (``kind``)."""
    data = _object(await read_json(request, gw.options.max_body_bytes))
    renames = RENAMES
    if kind == "prompt":
        body = humanloop.log_body(data, environment=environment)
    else:
        body = humanloop.kind_log_body(kind, data, environment=environment)
        renames = {**RENAMES, "body.file": f"body.{humanloop.KINDS[kind]}"}
    if version_id is not None:
        body["version_id"] = version_id
    answer, checked, later = await _log(gw, project, body, environment, [], renames)
    await gw.ingest.publish([checked])
    await _defer_versions(gw, [later] if later else [])
    if kind == "prompt":
        return JsonResponse(answer.model_dump(mode="json"))
    log = checked[0]
    assert isinstance(log, LogEvent)
    reply = CreateKindLogResponse(
        id=answer.id, version_id=answer.version_id, session_id=answer.session_id,
        parent_id=log.body.parent_id, log_status=log.body.log_status,
        **{f"{kind}_id": answer.prompt_id},
    )  # fmt: skip
    return JsonResponse(reply.model_dump(mode="json"))


def _file_route(kind: str, summary: str, shape: type, doc: str) -> None:
    """``POST /{kind}s/log``: Humanloop's log to a Prompt, a Flow, a Tool or an Evaluator."""

    async def route(
        request: Request,
        gw: GatewayDep,
        project: Project,
        version_id: IdQuery = None,
        environment: EnvironmentQuery = None,
    ) -> JsonResponse:
        return await _file_log(request, gw, project, kind, version_id, environment)

    route.__doc__ = doc
    humanloop_router.post(
        f"/{kind}s/log",
        response_model=CreateLogResponse if kind == "prompt" else CreateKindLogResponse,
        summary=summary,
        name=f"{kind}s_log",
        openapi_extra=body_doc(shape.__name__, shape),
    )(route)


_file_route(
    "prompt", "Log to a Prompt", PromptLogRequest,
    "Log one LLM call; prompt details create or find the version by content hash.",
)  # fmt: skip
_file_route(
    "flow", "Log to a Flow (the root of a trace)", FlowLogRequest,
    "A Flow log opens a trace: logs sent with ``trace_parent_id`` = its id join it."
    " ``log_status=incomplete`` keeps the trace running until it is updated to complete.",
)  # fmt: skip
_file_route("tool", "Log to a Tool", ToolLogRequest, "One call of a Tool.")
_file_route(
    "evaluator", "Submit an Evaluator's judgment on a log (its parent)", EvaluatorLogRequest,
    "Read back with the judged log, in its ``evaluator_logs``.",
)  # fmt: skip


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
        try:
            body = humanloop.legacy_log_body(request_item)
        except ContractError as exc:  # a config or feedback it cannot carry
            raise ValidationFailed.of(exc, where) from None
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


async def _reference_of(gw: GatewayDep, project: str, log_id: str) -> str | None:
    """The reference id of a log known by id (accepted here, recorded by a gateway, or
    stored): an update by id must reach the entity that stage 1 keys by it."""
    accepted = gw.ingest.accepted.get(project, log_id)
    if accepted is not None and accepted[0] is not None:
        return accepted[0]
    place = (await gw.logs.places(project, [log_id])).get(log_id)
    return place.reference_id if place is not None else None


async def _update(
    request: Request, gw: GatewayDep, project: str, log_id: str | None, reference_id: str | None
) -> JsonResponse:
    data = _object(await read_json(request, gw.options.max_body_bytes))
    body = humanloop.update_body(data, log_id=log_id, reference_id=reference_id)
    if log_id is not None and reference_id is None:
        known = await _reference_of(gw, project, log_id)
        if known is not None:
            body["reference_id"] = known
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
@humanloop_router.patch(
    "/flows/logs/{id:path}",
    response_model=LogUpdateAccepted,
    summary="Update a Flow log (the Humanloop SDK's flows.update_log)",
    description="``log_status=complete`` completes the Flow's trace (once no log in it is"
    " incomplete).",
    openapi_extra=body_doc("LogUpdateRequest", LogUpdateRequest),
)
async def patch_log(request: Request, gw: GatewayDep, project: Project, id: IdPath
                    ) -> JsonResponse:  # fmt: skip
    return await _update(request, gw, project, id, None)


@humanloop_router.patch(
    "/prompts/{file_id:path}/log/{id:path}",
    response_model=LogUpdateAccepted,
    summary="Update a Prompt's log (the Humanloop SDK's prompts.update_log)",
    openapi_extra=body_doc("LogUpdateRequest", LogUpdateRequest),
)
@humanloop_router.patch(
    "/tools/{file_id:path}/log/{id:path}",
    response_model=LogUpdateAccepted,
    summary="Update a Tool's log (the Humanloop SDK's tools.update)",
    openapi_extra=body_doc("LogUpdateRequest", LogUpdateRequest),
)
async def patch_file_log(
    request: Request, gw: GatewayDep, project: Project, file_id: IdPath, id: IdPath
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
    judgments = await store.judgments(project, row["id"], row.get("reference_id"))
    return log_view(row, feedback, judgments)


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
