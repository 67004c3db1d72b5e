"""The records of the pipeline's internal topics, as typed definitions every reader shares.

The stages exchange plain dicts (they are JSON on Kafka, and a dict is the cheapest thing
to merge and encode), so these are :class:`~typing.TypedDict` s: a type checker holds every
``value["..."]`` of the processors, the sink, replay and the gateway to them, and
``tests/unit/test_stage_records.py`` runs the stages and checks that what they emit matches
them (a field added to a stage's output without its definition fails there).

- ``<prefix>.entities`` (stage 1 -> stage 2 and the sink): one :data:`EntityOutput` per
  entity touched, the newest version of its merged state; payload fields only when this
  version brought them (``carried``, :mod:`producers.contract.outputs`).
- ``<prefix>.groups`` (stage 2 -> the groups step): :class:`Contribution` s, a member's
  :class:`MemberSummary` for a session or a prompt version.
- ``<prefix>.rollups`` (stage 2 and the groups step -> the sink): :class:`Rollup` s, the
  totals of a trace, a session or a prompt version.
- ``<prefix>.deadletter`` (every stage, replay, the gateway -> the sink):
  :class:`DeadLetterRecord` (:mod:`producers.contract.deadletters` writes and reads it).
"""

# No `from __future__ import annotations`: the TypedDicts' Required / NotRequired markers
# must be read at runtime (the drift test does).
from typing import Any, Literal, NotRequired, Required, TypedDict

__all__ = [
    "Contribution",
    "DeadLetterRecord",
    "EntityOutput",
    "FeedbackEntity",
    "GenerationEntity",
    "LogEntity",
    "MemberSummary",
    "NodeEntity",
    "Rollup",
    "SpanEntity",
    "TraceEntity",
]

EntityKind = Literal[
    "log",
    "feedback",
    "trace",
    "span",
    "generation",
    # Maxim's other nodes (one NodeEntity each)
    "tool_call",
    "retrieval",
    "event",
    "error",
    "attachment",
    "session",
]
RollupKind = Literal["trace", "session", "prompt_version"]
JsonObject = dict[str, Any]


class _Entity(TypedDict, total=False):
    """What every entity output carries."""

    kind: Required[EntityKind]
    project: Required[str]
    id: Required[str | None]
    key: Required[str]  # the entity's state key (project and identity)
    version: Required[int]  # events merged so far: downstream keeps the highest
    last_ts: Required[float]  # the newest event's time (epoch seconds)
    partial: bool  # updates seen, the create not yet
    carried: list[str]  # payload fields this version brought
    trace_root: str | None  # the trace it belongs to: its key on the entities topic
    deleted: bool  # the entity's last output: the sink removes its rows
    metadata: JsonObject | None
    tags: dict[str, str] | None
    name: str | None
    start_time: str | None
    end_time: str | None
    metrics: JsonObject | None  # Maxim's numeric metrics of a node


class _Usage(TypedDict, total=False):
    prompt_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    tokens: int
    cost: float | None
    cost_source: str | None  # "caller", "computed" or "unknown" (no price for the model)


class LogEntity(_Entity, _Usage, total=False):
    """A Humanloop log (prompt, flow, tool or evaluator), its fields as merged."""

    reference_id: str | None
    path: str | None
    prompt_id: str | None
    prompt: JsonObject | None
    version_id: str | None
    log_kind: str
    file: JsonObject | None
    log_status: str | None
    marked_completed: bool | None
    created_at: str | None
    save: bool
    trace_id: str | None
    trace_parent_log_id: str | None
    session_id: str | None
    session_reference_id: str | None
    parent_id: str | None
    parent_reference_id: str | None
    messages: list[Any] | None
    inputs: JsonObject | None
    output: str | None
    output_message: Any
    raw_output: str | None
    finish_reason: str | None
    tools: list[Any] | None
    tool_choice: Any
    error: str | None
    stdout: str | None
    provider_request: JsonObject | None
    provider_response: JsonObject | None
    prompt_cost: float | None
    output_cost: float | None
    provider_latency: float | None
    duration: float | None
    source: str | None
    user: str | None
    environment: str | None
    judgment: Any
    config_id: str | None
    evaluation_id: str | None
    source_datapoint_id: str | None
    batches: list[str] | None


class FeedbackEntity(_Entity, total=False):
    """On a log (Humanloop), or on a trace or a session (Maxim's score and comment)."""

    log_id: str | None
    reference_id: str | None
    trace_id: str | None
    session_id: str | None
    value: Any  # a judgment: bool, number, labels or text
    comment: str | None
    source: str | None
    user: str | None
    created_at: str | None


class TraceEntity(_Entity, total=False):
    session_id: str | None
    input: str | None
    output: str | None


class SpanEntity(_Entity, total=False):
    trace_id: str | None
    parent_id: str | None
    input: str | None


class GenerationEntity(_Entity, _Usage, total=False):
    trace_id: str | None
    parent_id: str | None
    provider: str | None
    model: str | None
    model_parameters: JsonObject | None
    messages: list[Any] | None
    result: JsonObject | None
    error: JsonObject | None
    status: str | None  # "success" or "error" once a result or an error came
    added_messages: list[Any] | None  # messages appended after creation, in line order
    caller_cost: float | None  # a cost the caller gave (it wins over the price table)


class NodeEntity(_Entity, total=False):
    """A Maxim tool call, retrieval, event, error, attachment, or a session's own node."""

    trace_id: str | None
    session_id: str | None
    parent_id: str | None
    description: str | None  # a tool call's
    args: Any  # a tool call's
    result: Any  # a tool call's
    error: Any  # a tool call's, or an error node's
    query: Any  # a retrieval's input
    documents: Any  # a retrieval's output
    attachment: JsonObject | None  # its metadata and URL or key, MIME type, size; no bytes


EntityOutput = LogEntity | FeedbackEntity | TraceEntity | SpanEntity | GenerationEntity | NodeEntity


class MemberSummary(TypedDict, total=False):
    """What a group needs of one member (an entity or a trace rollup)."""

    kind: Required[str]
    id: Required[str | None]
    version: Required[int]
    retracted: bool  # the member left (deleted, or moved): it no longer counts
    parent: str | None
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    tokens: int
    cost: float | None
    priced: int
    unpriced_count: int
    error: bool
    error_count: int
    incomplete: int
    start: float | None
    end: float | None
    session_id: str | None
    version_id: str | None
    name: str | None


class Contribution(TypedDict):
    """A member's summary for a group of the groups step, keyed by the group."""

    group: str  # "session" or "prompt_version"
    project: str
    id: str  # the group's id
    member: str
    summary: MemberSummary
    last_ts: float


class Rollup(TypedDict, total=False):
    """The totals of a trace, a session or a prompt version (``counts`` empty: none of its
    members is left, and the sink removes the row)."""

    kind: Required[RollupKind]
    project: Required[str]
    id: Required[str]
    version: Required[int]
    counts: Required[dict[str, int]]  # members per kind
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    tokens: int
    cost: float | None
    priced: int
    unpriced_count: int
    error_count: int
    start_time: str | None
    end_time: str | None
    duration: float | None
    name: str | None  # a trace's
    status: str  # a trace's: "complete" or "incomplete"
    session_id: str | None  # a trace's session
    other_sessions: list[str]  # sessions a trace left: their totals changed too
    latencies: dict[str, float]  # per node kind, the sum of its nodes' own durations


class DeadLetterRecord(TypedDict):
    """An event or record that could not be parsed, validated or stored."""

    topic: str
    partition: int
    offset: int
    index: int  # the event's position in its record; -1 for the whole record
    event_id: str | None
    reason: str
    raw: str  # the raw bytes as text (cut when too large: ``raw_truncated``)
    raw_truncated: NotRequired[bool]
    raw_bytes: NotRequired[int]
