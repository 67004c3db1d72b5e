"""Deleting logs, traces and sessions: ``DELETE /logs?id=…`` as the humanloop SDK's
``logs.delete(id=[...])`` sends it (also ``reference_id=…``), ``DELETE /logs/{id}``,
``DELETE /traces/{id}`` and ``DELETE /sessions/{id}``. Served at the root and under
``/v5``.

A deletion is answered once its ``delete`` events (one per entity, see
:mod:`gateway.deletion`) are acknowledged by Kafka or spooled, like every write; the
pipeline then removes the rows, corrects the trace, session and prompt-version totals and
drops every later event of the entities. The raw events sent before it stay in the raw
topic until its retention ends (README, "Privacy").
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from producers.contract import FieldError

from .auth import Project
from .context import GatewayDep, IdList, IdPath
from .deletion import Targets, resolve
from .errors import JsonResponse, ValidationFailed
from .ingest import envelope
from .views import DeletionAccepted

__all__ = ["delete_router"]

delete_router = APIRouter(tags=["delete"])
_Ids = Annotated[IdList | None, Query(max_length=1000)]


async def _publish(gw: GatewayDep, project: str, targets: Targets) -> JsonResponse:
    envelopes = [envelope("delete", project, body) for body in targets.bodies.values()]
    events = await gw.ingest.accept_all(envelopes)
    forgotten = []
    for body in targets.bodies.values():
        if body["kind"] == "log":
            gw.ingest.accepted.forget(project, body.get("id"), body.get("reference_id"))
            if body.get("id") is not None:
                forgotten.append(body["id"])
    if forgotten:  # the gateway's record of their traces and reference ids
        await gw.logs.forget(project, forgotten)
    answer = DeletionAccepted(deleted=targets.counts(), event_ids=[e.event_id for e in events])
    return JsonResponse(answer.model_dump(mode="json"))


@delete_router.delete("/logs", response_model=DeletionAccepted, summary="Delete logs")
async def delete_logs(
    gw: GatewayDep,
    project: Project,
    id: Annotated[_Ids, Query(alias="id")] = None,
    reference_id: _Ids = None,
) -> JsonResponse:
    """Delete the logs with these ids and reference ids, with their feedback."""
    if not id and not reference_id:
        raise ValidationFailed([FieldError("query.id", "name at least one id or reference_id")])
    targets = await resolve(gw.store, project, log_ids=id or (), reference_ids=reference_id or ())
    return await _publish(gw, project, targets)


@delete_router.delete("/logs/{id:path}", response_model=DeletionAccepted, summary="Delete a log")
async def delete_log(gw: GatewayDep, project: Project, id: IdPath) -> JsonResponse:
    return await _publish(gw, project, await resolve(gw.store, project, log_ids=[id]))


@delete_router.delete(
    "/traces/{id:path}", response_model=DeletionAccepted, summary="Delete a trace and its members"
)
async def delete_trace(gw: GatewayDep, project: Project, id: IdPath) -> JsonResponse:
    return await _publish(gw, project, await resolve(gw.store, project, trace_ids=[id]))


@delete_router.delete(
    "/sessions/{id:path}",
    response_model=DeletionAccepted,
    summary="Delete a session's traces and logs",
)
async def delete_session(gw: GatewayDep, project: Project, id: IdPath) -> JsonResponse:
    return await _publish(gw, project, await resolve(gw.store, project, session_ids=[id]))
