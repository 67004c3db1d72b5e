"""Keyword arguments of the emit calls, for type checkers and editors (PEP 692 ``Unpack``).

The calls take ``**fields`` so that the interpreter builds the body dict for free; these
TypedDicts say which names and types are accepted. Field meanings are the contract's
(``producers.contract.log`` and ``producers.contract.maxim``). Values are checked against
the contract in the worker (or at the call, in strict mode), never here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

__all__ = [
    "FeedbackParams",
    "GenerationParams",
    "LogParams",
    "LogUpdateParams",
    "SpanParams",
    "SpanUpdateParams",
    "TraceParams",
    "TraceUpdateParams",
]

Message = Mapping[str, Any] | Any  # a dict, or an object with model_dump() (openai)
JsonObject = Mapping[str, Any]
Judgment = bool | float | list[str] | str


class LogFieldParams(TypedDict, total=False):
    """The mutable fields of a log (what ``update_log`` may set)."""

    messages: Sequence[Message] | None
    inputs: JsonObject | None
    output: str | None
    output_message: Message | None
    raw_output: str | None
    finish_reason: str | None
    tools: Sequence[JsonObject] | None
    tool_choice: str | JsonObject | None
    error: str | None
    stdout: str | None
    provider_request: JsonObject | None
    provider_response: JsonObject | None
    prompt_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    prompt_cost: float | None
    output_cost: float | None
    start_time: datetime | str | None
    end_time: datetime | str | None
    provider_latency: float | None
    duration: float | None
    metadata: JsonObject | None
    source: str | None
    user: str | None
    environment: str | None
    judgment: Judgment | None
    config_id: str | None
    evaluation_id: str | None
    source_datapoint_id: str | None
    batches: Sequence[str] | None
    session_id: str | None
    session_reference_id: str | None
    parent_id: str | None
    parent_reference_id: str | None
    log_status: str | None  # "incomplete" | "complete"
    marked_completed: bool | None


class LogParams(LogFieldParams, total=False):
    """``client.log(...)``: Humanloop's "Log to a Prompt" (or to a Flow, Tool or Evaluator:
    ``log_kind``). ``id`` is the log's own id (generated when absent); the Prompt's id is
    ``prompt_id``. A log in a trace names the trace's root in ``trace_id``."""

    id: str
    reference_id: str | None
    path: str | None
    prompt_id: str | None
    prompt: JsonObject | Any | None
    version_id: str | None
    log_kind: str | None  # "prompt" (the default) | "flow" | "tool" | "evaluator"
    file: JsonObject | None  # a Flow's or Tool's kernel, an Evaluator's spec
    trace_id: str | None
    trace_parent_log_id: str | None
    created_at: datetime | str | None
    save: bool


class LogUpdateParams(LogFieldParams, total=False):
    """``client.update_log(...)``: by ``reference_id`` or by log ``id``."""

    id: str | None
    reference_id: str | None


class FeedbackParams(TypedDict, total=False):
    """``client.feedback(...)``: on a log, by ``log_id`` or ``reference_id``; or on a trace
    or a session, by ``trace_id`` or ``session_id``."""

    id: str
    log_id: str | None
    reference_id: str | None
    trace_id: str | None
    session_id: str | None
    value: Judgment
    comment: str | None
    source: str | None
    user: str | None
    metadata: JsonObject | None
    created_at: datetime | str | None


class _NodeParams(TypedDict, total=False):
    name: str | None
    tags: Mapping[str, str] | None
    metadata: JsonObject | None
    metrics: JsonObject | None
    start_time: datetime | str | None
    end_time: datetime | str | None


class TraceParams(_NodeParams, total=False):
    """``client.trace(...)``."""

    id: str
    session_id: str | None
    input: str | None
    output: str | None


class SpanParams(_NodeParams, total=False):
    """``trace.span(...)`` / ``span.span(...)``."""

    id: str
    input: str | None


class TraceUpdateParams(_NodeParams, total=False):
    """``trace.update(...)`` / ``trace.end(...)``."""

    session_id: str | None
    input: str | None
    output: str | None


class SpanUpdateParams(_NodeParams, total=False):
    """``span.update(...)`` / ``span.end(...)``."""

    input: str | None


class GenerationParams(TypedDict, total=False):
    """``span.generation(...)`` / ``trace.generation(...)``."""

    id: str
    name: str | None
    provider: str
    model: str
    model_parameters: JsonObject | None
    messages: Sequence[Message]
    add_messages: Sequence[Message] | None
    tags: Mapping[str, str] | None
    metadata: JsonObject | None
    metrics: JsonObject | None
    cost: Mapping[str, float] | None  # a caller's {input, output, total}: wins over pricing
    start_time: datetime | str | None
    end_time: datetime | str | None
