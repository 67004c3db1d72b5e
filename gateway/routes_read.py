"""The read API beyond single logs: traces (the tree with per-node and total usage),
sessions, and the listing of traces by time (keyset pagination)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from .auth import Project
from .context import CURSOR_MAX_LENGTH, GatewayDep, IdPath
from .errors import JsonResponse, NotFound
from .store import Cursor, ReadStore
from .views import SessionView, TracePage, TraceView, session_view, trace_summary, trace_view

__all__ = ["read_router"]

read_router = APIRouter(tags=["read"])


def _store(gw: GatewayDep) -> ReadStore:
    if gw.store is None:
        raise NotFound("no read store")
    return gw.store


@read_router.get("/traces/{id:path}", response_model=TraceView, summary="A trace as a tree")
async def get_trace(gw: GatewayDep, project: Project, id: IdPath) -> JsonResponse:
    """Spans, generations, logs and Maxim's other nodes (tool calls, retrievals, events,
    errors, attachments) nested by parent, each with its own usage and its subtree's; the
    trace's totals are the pipeline's rollup (all descendants); its feedback."""
    store = _store(gw)
    trace = await store.trace(project, id)
    spans, generations, logs = await store.trace_members(project, id)
    nodes, feedback = await store.maxim_nodes(project, trace_id=id)
    if trace is None and not (spans or generations or logs or nodes):
        raise NotFound(f"no trace {id!r}")
    view = trace_view(id, trace, spans, generations, logs, nodes=nodes, feedback=feedback)
    return JsonResponse(view.model_dump(mode="json"))


@read_router.get("/traces", response_model=TracePage, summary="List traces, newest first")
async def list_traces(
    gw: GatewayDep,
    project: Project,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JsonResponse:
    rows, next_cursor = await _store(gw).traces_page(
        project, limit=min(limit, gw.options.list_limit_max),
        cursor=Cursor.decode(cursor) if cursor else None,
    )  # fmt: skip
    page = {"records": [trace_summary(r).model_dump(mode="json") for r in rows],
            "next_cursor": next_cursor.encode() if next_cursor else None}  # fmt: skip
    return JsonResponse(page)


@read_router.get("/sessions/{id:path}", response_model=SessionView, summary="A session")
async def get_session(gw: GatewayDep, project: Project, id: IdPath) -> JsonResponse:
    """The session's totals (over its traces), its traces and its logs; a Maxim session's
    own node (name, tags, metadata, start, end), its events, attachments and feedback."""
    store = _store(gw)
    totals, traces, logs = await store.session(project, id)
    nodes, feedback = await store.maxim_nodes(project, session_id=id)
    if totals is None and not traces and not logs and not nodes and not feedback:
        raise NotFound(f"no session {id!r}")
    view = session_view(id, totals, traces, logs, nodes=nodes, feedback=feedback)
    return JsonResponse(view.model_dump(mode="json"))
