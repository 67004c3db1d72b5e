"""What the read API answers: response models and how stored rows become them.

A log is the contract's :class:`~producers.contract.LogResponse` (every field of the seed's
"Retrieve a log" response) plus what the official Humanloop SDK's ``PromptLogResponse``
also reads (``prompt``, ``trace_parent_id``, ``batches``, ``evaluator_logs``) and the
total ``cost``. A trace is its tree (spans, generations, logs) with each node's own usage
and the totals of its subtree; the trace's totals are the pipeline's rollup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producers.contract import LogResponse
from producers.contract.types import JsonObject

__all__ = [
    "CreateKindLogResponse",
    "DeletionAccepted",
    "LogPage",
    "LogUpdateAccepted",
    "LogView",
    "SessionView",
    "Totals",
    "TraceNode",
    "TracePage",
    "TraceSummary",
    "TraceView",
    "log_view",
    "pending_log",
    "session_view",
    "trace_summary",
    "trace_view",
]


class _QuietDump(BaseModel):
    """A view that may hold stored values the contract would now refuse (shown as they are,
    :func:`log_view`): its dumps never warn, since pydantic's warning about an unexpected
    value quotes the value (a log's messages) on the gateway's stderr."""

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("warnings", False)
        return super().model_dump(**kwargs)


class LogView(LogResponse, _QuietDump):
    """A log as ``GET /logs/{id}`` answers it."""

    cost: float | None = Field(default=None, description="prompt_cost + output_cost.")
    path: str | None = None
    prompt: JsonObject | None = Field(default=None, description="The Prompt version's details.")
    trace_parent_id: str | None = Field(default=None, description="= trace_parent_log_id.")
    evaluator_logs: list[JsonObject] = Field(
        default_factory=list, description="The evaluator logs judging this log."
    )
    flow: JsonObject | None = Field(default=None, description="A Flow log's Flow.")
    tool: JsonObject | None = Field(default=None, description="A Tool log's Tool.")
    evaluator: JsonObject | None = Field(default=None, description="An Evaluator log's.")


class CreateKindLogResponse(BaseModel):
    """Answer to logging to a Flow, a Tool or an Evaluator (Humanloop's
    ``CreateFlowLogResponse``, ``CreateToolLogResponse``, ``CreateEvaluatorLogResponse``)."""

    id: str
    version_id: str | None = None
    session_id: str | None = None
    flow_id: str | None = None
    tool_id: str | None = None
    evaluator_id: str | None = None
    parent_id: str | None = None
    log_status: Literal["incomplete", "complete"] | None = None


class LogUpdateAccepted(BaseModel):
    """An update is accepted at once and applied by the pipeline."""

    id: str | None = None
    reference_id: str | None = None
    observability_status: Literal["pending"] = "pending"
    updated_at: datetime


class DeletionAccepted(BaseModel):
    """A deletion is published at once (a ``delete`` event per entity) and applied by the
    pipeline: rows removed, totals corrected, later events of the entities dropped."""

    deleted: dict[str, int] = Field(description="Entities per kind: log, trace, span...")
    event_ids: list[str]


class LogPage(_QuietDump):
    """A keyset page (``next_cursor``), or with ``page`` a numbered one (Humanloop's
    ``PaginatedDataLogResponse``: ``page``, ``size``, ``total``)."""

    records: list[LogView]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for more.")
    page: int | None = None
    size: int | None = None
    total: int | None = None


class Totals(BaseModel):
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None


NodeKind = Literal[
    "span", "generation", "log", "tool_call", "retrieval", "event", "error", "attachment"
]


class TraceNode(BaseModel):
    """One span, generation, log, tool call, retrieval, event, error or attachment of a
    trace; ``usage`` is its own, ``subtree`` includes its descendants; ``latency`` its own
    end - start in seconds. The fields of Maxim's nodes are set for their kind only."""

    model_config = ConfigDict(defer_build=True)

    kind: NodeKind
    log_kind: Literal["prompt", "flow", "tool", "evaluator"] | None = None
    id: str
    parent_id: str | None = None
    name: str | None = None
    status: str | None = None
    provider: str | None = None
    model: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    partial: bool = False
    latency: float | None = None
    tags: JsonObject | None = None
    metadata: JsonObject | None = None
    metrics: JsonObject | None = None
    description: str | None = None
    args: str | None = Field(default=None, description="A tool call's arguments.")
    result: str | None = Field(default=None, description="A tool call's result.")
    error: JsonObject | None = Field(default=None, description="A tool call's or error's.")
    query: str | None = Field(default=None, description="A retrieval's input.")
    documents: list[Any] | None = Field(default=None, description="A retrieval's output.")
    attachment: JsonObject | None = Field(default=None, description="Metadata, URL or key.")
    cost_source: str | None = Field(default=None, description="A generation's: provided...")
    usage: Totals
    subtree: Totals
    children: list[TraceNode] = Field(default_factory=list)


class TraceView(BaseModel):
    id: str
    name: str | None = None
    status: str | None = None
    session_id: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: float | None = None
    tags: JsonObject | None = None
    metadata: JsonObject | None = None
    input: str | None = None
    output: str | None = None
    partial: bool = False
    metrics: JsonObject | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    error_count: int = 0
    unpriced_count: int = 0
    latencies: dict[str, float] = Field(
        default_factory=dict, description="Per kind, the sum of its nodes' own latencies (s)."
    )
    totals: Totals
    feedback: list[JsonObject] = Field(default_factory=list)
    children: list[TraceNode] = Field(default_factory=list)


class TraceSummary(BaseModel):
    id: str
    name: str | None = None
    status: str | None = None
    session_id: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    totals: Totals


class TracePage(BaseModel):
    records: list[TraceSummary]
    next_cursor: str | None = None


class SessionView(_QuietDump):
    id: str
    name: str | None = Field(default=None, description="A Maxim session's own node...")
    tags: JsonObject | None = None
    metadata: JsonObject | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    error_count: int = 0
    totals: Totals
    traces: list[TraceSummary] = Field(default_factory=list)
    logs: list[LogView] = Field(default_factory=list)
    feedback: list[JsonObject] = Field(default_factory=list)
    nodes: list[TraceNode] = Field(default_factory=list, description="Its events, attachments.")


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, Decimal | int | float) else None


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


_LOG_DROP = {
    "stored_at", "is_partial", "version", "listed_at", "path", "payload_carried", "file"
}  # fmt: skip


def log_view(
    row: dict[str, Any],
    feedback: list[dict[str, Any]] | None = None,
    judgments: list[dict[str, Any]] | None = None,
) -> LogView:
    """A stored ``logs`` row (its feedback, and the evaluator logs judging it) as the API
    shows it. A Flow's, Tool's or Evaluator's log names its File under that kind
    (``flow``, ``tool``, ``evaluator``), as Humanloop's log responses do."""
    data = {k: v for k, v in row.items() if k not in _LOG_DROP and v is not None}
    for name in ("prompt_cost", "output_cost", "cost"):
        if name in data:
            data[name] = _float(data[name])
    batch_ids = data.get("batch_ids")
    if batch_ids is not None:
        data["batch_ids"] = data["batches"] = list(batch_ids)
    data["project_id"] = row["project"]
    data["observability_status"] = "completed"
    data["trace_parent_id"] = row.get("trace_parent_log_id")
    kind = row.get("log_kind") or "prompt"
    details = data.pop("prompt", None) if kind == "prompt" else row.get("file")
    if details is not None or row.get("prompt_id") or row.get("path"):
        data[kind] = {**(details or {}), "id": row.get("prompt_id"), "path": row.get("path"),
                      "version_id": row.get("version_id")}  # fmt: skip
        if kind != "prompt":
            data[kind]["type"] = kind
    data["path"] = row.get("path")
    if judgments:
        data["evaluator_logs"] = [log_view(j).model_dump(mode="json") for j in judgments]
    if feedback:
        data["feedback"] = _feedback(feedback)
    try:
        return LogView.model_validate(data)
    except ValidationError:  # a stored value the contract would now refuse: show it as is
        return LogView.model_construct(**data)


def _feedback(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in f.items()
         if v is not None}
        for f in rows
    ]  # fmt: skip


def pending_log(log_id: str | None, reference_id: str | None) -> LogView:
    """A log the gateway accepted that the pipeline has not stored yet."""
    return LogView.model_construct(
        id=log_id, reference_id=reference_id, observability_status="pending",
        updated_at=datetime.now(UTC), evaluation_results=[], evaluator_logs=[],
    )  # fmt: skip


def _totals(row: dict[str, Any], *, output: str = "output_tokens", total: str = "total_tokens"
            ) -> Totals:  # fmt: skip
    return Totals(
        prompt_tokens=_int(row.get("prompt_tokens")),
        output_tokens=_int(row.get(output)),
        cached_tokens=_int(row.get("cached_tokens")),
        reasoning_tokens=_int(row.get("reasoning_tokens")),
        total_tokens=_int(row.get(total)),
        cost=_float(row.get("cost")),
    )


def _add(a: Totals, b: Totals) -> Totals:
    cost = None if a.cost is None and b.cost is None else (a.cost or 0.0) + (b.cost or 0.0)
    return Totals(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
        cost=cost,
    )


# The columns a node shows beyond the common ones: its kind's (trace_nodes), or a
# generation's cost source (its result and error are the provider's, not shown here).
_SHARED = ("tags", "metadata", "metrics")
_OWN_FIELDS = {
    "generation": (*_SHARED, "cost_source"),
    **dict.fromkeys(("span", "log"), _SHARED),
}
_NODE_FIELDS = (*_SHARED, "description", "args", "result", "error", "query", "documents",
                "attachment")  # fmt: skip


def _kind(row: dict[str, Any]) -> NodeKind:
    return row["kind"]  # type: ignore[no-any-return]  # trace_nodes.kind: see NODE_KINDS


def _node_status(kind: str, row: dict[str, Any]) -> str | None:
    """A Maxim node's status: an error, or a tool call that answered."""
    if row.get("error") is not None:
        return "error"
    if kind == "tool_call" and row.get("result") is not None:
        return "success"
    return None


def _node(kind: NodeKind, row: dict[str, Any], parent: str | None, usage: Totals) -> TraceNode:
    start = row.get("start_time") or row.get("created_at")
    end = row.get("end_time")
    latency = (end - start).total_seconds() if start and end and kind != "event" else None
    status = row.get("status") or row.get("log_status")
    fields = _OWN_FIELDS.get(kind, _NODE_FIELDS)
    extra = {name: row[name] for name in fields if row.get(name) is not None}
    return TraceNode(
        kind=kind, id=row["id"], parent_id=parent, name=row.get("name") or row.get("path"),
        log_kind=(row.get("log_kind") or "prompt") if kind == "log" else None,
        status=status if kind in ("span", "generation", "log") else _node_status(kind, row),
        provider=row.get("provider"), model=row.get("model"),
        start_time=start, end_time=end, latency=latency,
        partial=bool(row.get("is_partial")), usage=usage, subtree=usage, **extra,
    )  # fmt: skip


def trace_view(
    trace_id: str,
    trace: dict[str, Any] | None,
    spans: list[dict[str, Any]],
    generations: list[dict[str, Any]],
    logs: list[dict[str, Any]],
    *,
    nodes: Sequence[dict[str, Any]] = (),
    feedback: Sequence[dict[str, Any]] = (),
) -> TraceView:
    """The tree of a trace; each node's subtree totals are summed here, the trace's come
    from the pipeline's rollup when it is there. ``nodes``: Maxim's tool calls,
    retrievals, events, errors and attachments (``trace_nodes`` rows)."""
    root_log = next((log for log in logs if log["id"] == trace_id), None)
    tree: list[TraceNode] = [_node("span", s, s.get("parent_id"), Totals()) for s in spans]
    tree += [
        _node("generation", g, g.get("parent_id"), _totals(g, output="completion_tokens"))
        for g in generations
    ]
    tree += [_node(_kind(n), n, n.get("parent_id"), Totals()) for n in nodes]
    for log in logs:
        parent = log.get("trace_parent_log_id") or log.get("parent_id")
        if parent is None and root_log is not None and log["id"] != trace_id:
            parent = trace_id
        tree.append(_node("log", log, parent, _totals(log, total="tokens")))
    by_id = {node.id: node for node in tree if node.kind in _PARENT_KINDS}
    roots: list[TraceNode] = []
    for node in tree:
        parent = by_id.get(node.parent_id) if node.parent_id else None
        if parent is not None and parent is not node:
            parent.children.append(node)
        else:
            roots.append(node)
    computed = Totals()
    for node in roots:
        _fill_subtree(node, set())
        computed = _add(computed, node.subtree)
    row = trace or {}
    rolled_up = bool(row.get("rollup_version"))
    return TraceView(
        id=trace_id, name=row.get("name") or (root_log or {}).get("path"),
        status=row.get("status"),
        session_id=row.get("session_id") or row.get("rollup_session_id"),
        start_time=row.get("start_time") or row.get("first_seen"),
        end_time=row.get("end_time") or row.get("last_seen"), duration=row.get("duration"),
        tags=row.get("tags"), metadata=row.get("metadata"), metrics=row.get("metrics"),
        input=row.get("input"), output=row.get("output"), partial=bool(row.get("is_partial")),
        counts=row.get("counts") or {}, error_count=_int(row.get("error_count")),
        unpriced_count=_int(row.get("unpriced_count")), latencies=row.get("latencies") or {},
        totals=_totals(row) if rolled_up else computed, feedback=_feedback(feedback),
        children=roots,
    )  # fmt: skip


# Kinds a node may hang below (a retrieval holds its attachments; events, errors and
# attachments hold nothing, and an id they share with a span must not capture its children).
_PARENT_KINDS = frozenset({"span", "generation", "log", "retrieval", "tool_call"})


def _fill_subtree(node: TraceNode, seen: set[str]) -> Totals:
    seen.add(node.id)
    total = node.usage
    for child in node.children:
        if child.id not in seen:
            total = _add(total, _fill_subtree(child, seen))
    node.subtree = total
    return total


def trace_summary(row: dict[str, Any]) -> TraceSummary:
    return TraceSummary(
        id=row["id"], name=row.get("name"), status=row.get("status"),
        session_id=row.get("session_id") or row.get("rollup_session_id"),
        start_time=row.get("start_time") or row.get("first_seen"),
        end_time=row.get("end_time") or row.get("last_seen"), totals=_totals(row),
    )  # fmt: skip


def session_view(
    session_id: str,
    totals: dict[str, Any] | None,
    traces: list[dict[str, Any]],
    logs: list[dict[str, Any]],
    *,
    nodes: Sequence[dict[str, Any]] = (),
    feedback: Sequence[dict[str, Any]] = (),
) -> SessionView:
    """``nodes``: a Maxim session's own node (kind ``session``), its events and
    attachments (``trace_nodes`` rows)."""
    row = totals or {}
    own = next((n for n in nodes if n["kind"] == "session"), {})
    return SessionView(
        id=session_id, name=own.get("name"), tags=own.get("tags"), metadata=own.get("metadata"),
        start_time=own.get("start_time"), end_time=own.get("end_time"),
        first_seen=row.get("first_seen"), last_seen=row.get("last_seen"),
        counts=row.get("counts") or {}, error_count=_int(row.get("error_count")),
        totals=_totals(row), traces=[trace_summary(t) for t in traces],
        logs=[log_view(log) for log in logs], feedback=_feedback(feedback),
        nodes=[_node(_kind(n), n, None, Totals()) for n in nodes if n["kind"] != "session"],
    )  # fmt: skip
