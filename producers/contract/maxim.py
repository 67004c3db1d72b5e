"""Maxim-style bodies: traces, spans, generations and a generation's result or error, and
the other nodes of Maxim's logger (tool calls, retrievals, events, errors, attachments,
sessions).

Maxim's logger builds a tree: ``trace.span(...)``, ``span.generation(...)`` (or
``trace.generation(...)``), then ``generation.result(chat_completion)``; ``span.tool_call``,
``span.retrieval``, ``span.event``, ``span.add_error`` and ``add_attachment`` hang further
nodes on it (:class:`NodeBody`, one body with the fields of each kind). Every node below a
trace carries ``trace_id`` so that each event can be routed and assembled on its own,
whatever order the events arrive in; a session's own node and its events and attachments
carry ``session_id`` instead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field, model_validator
from pydantic_core import PydanticCustomError

from .types import (
    ChatMessage,
    Cost,
    EntityId,
    JsonObject,
    Name,
    ProviderObject,
    Tags,
    TokenCount,
    WireModel,
)

__all__ = [
    "NODE_KINDS",
    "NODE_KIND_FIELDS",
    "AttachmentInfo",
    "CallerCost",
    "ChatCompletion",
    "ChatCompletionChoice",
    "GenerationBody",
    "GenerationErrorBody",
    "GenerationFailure",
    "GenerationResultBody",
    "NodeBody",
    "SpanBody",
    "TraceBody",
    "Usage",
]

Action = Literal["create", "update", "end"]


class _TreeNode(WireModel):
    """What traces and spans share: create, update and end events of one node."""

    id: EntityId
    action: Action = "create"
    name: Name | None = None
    tags: Tags | None = None
    metadata: JsonObject | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    metrics: JsonObject | None = Field(default=None, description="Merged key by key.")


class TraceBody(_TreeNode):
    """``logger.trace(...)``, ``trace.set_input/set_output/add_tag``, ``trace.end()``."""

    session_id: EntityId | None = None
    input: str | None = None
    output: str | None = None


class SpanBody(_TreeNode):
    """``trace.span(...)`` / ``span.span(...)``; ``parent_id`` is None directly under the trace."""

    trace_id: EntityId
    parent_id: EntityId | None = None
    input: str | None = Field(default=None, description="``span.input(...)``.")


class CallerCost(WireModel):
    """``generation.add_cost(...)``: what the call cost, as the caller says (it wins over
    the computed price)."""

    input: Cost | None = None
    output: Cost | None = None
    total: Cost


class GenerationBody(WireModel):
    """``span.generation(...)`` or ``trace.generation(...)``: one LLM call being made
    (``create``), and what is set on it afterwards (``update``: model, provider, name,
    parameters, ``add_messages``, tags, metadata, metrics, a caller's ``cost``; ``end``)."""

    id: EntityId
    action: Action = "create"
    trace_id: EntityId
    parent_id: EntityId | None = Field(default=None, description="Span id; None under the trace.")
    name: Name | None = None
    provider: Name | None = None
    model: Name | None = None
    model_parameters: JsonObject | None = None
    messages: list[ChatMessage] = Field(default_factory=list)
    add_messages: list[ChatMessage] | None = Field(
        default=None, description="Messages appended after creation (``add_message``)."
    )
    tags: Tags | None = None
    metadata: JsonObject | None = None
    metrics: JsonObject | None = None
    cost: CallerCost | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None

    @model_validator(mode="after")
    def _create_names_its_model(self) -> GenerationBody:
        if self.action == "create":
            for name in ("provider", "model"):
                if getattr(self, name) is None:
                    raise PydanticCustomError(
                        "missing_on_create", "is required to create a generation",
                        {"field": name},
                    )  # fmt: skip
        return self


class PromptTokensDetails(ProviderObject):
    cached_tokens: TokenCount | None = None
    audio_tokens: TokenCount | None = None


class CompletionTokensDetails(ProviderObject):
    reasoning_tokens: TokenCount | None = None
    audio_tokens: TokenCount | None = None
    accepted_prediction_tokens: TokenCount | None = None
    rejected_prediction_tokens: TokenCount | None = None


class Usage(ProviderObject):
    """OpenAI's usage block: cached tokens under ``prompt_tokens_details``, reasoning tokens
    under ``completion_tokens_details``."""

    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    total_tokens: TokenCount | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return (details.cached_tokens or 0) if details else 0

    @property
    def reasoning_tokens(self) -> int:
        details = self.completion_tokens_details
        return (details.reasoning_tokens or 0) if details else 0


class ChatCompletionChoice(ProviderObject):
    index: int = Field(default=0, ge=0)
    message: ChatMessage
    finish_reason: Name | None = None
    logprobs: Any = None


class ChatCompletion(ProviderObject):
    """An OpenAI ``chat.completion`` (what ``generation.result(...)`` is given)."""

    id: str = Field(max_length=256)
    object: str | None = Field(default="chat.completion", max_length=64)
    created: int = Field(ge=0)
    model: Name | None = None
    choices: list[ChatCompletionChoice] = Field(default_factory=list)
    usage: Usage | None = None


class GenerationResultBody(WireModel):
    """``generation.result(chat_completion)``: the provider result with its usage."""

    generation_id: EntityId
    trace_id: EntityId
    result: ChatCompletion
    end_time: AwareDatetime | None = None


class GenerationFailure(WireModel):
    message: str
    code: str | None = Field(default=None, max_length=256)
    type: str | None = Field(default=None, max_length=256)


class GenerationErrorBody(WireModel):
    """``generation.error(...)``: the LLM call failed."""

    generation_id: EntityId
    trace_id: EntityId
    error: GenerationFailure
    end_time: AwareDatetime | None = None


# The other nodes of a Maxim trace or session, and the fields of their own each may carry.
NODE_KINDS: tuple[str, ...] = ("tool_call", "retrieval", "event", "error", "attachment", "session")
NodeKind = Literal["tool_call", "retrieval", "event", "error", "attachment", "session"]
NODE_KIND_FIELDS: dict[str, frozenset[str]] = {
    "tool_call": frozenset({"description", "args", "result", "error"}),
    "retrieval": frozenset({"query", "documents"}),
    "event": frozenset(),
    "error": frozenset({"error"}),
    "attachment": frozenset({"attachment"}),
    "session": frozenset(),
}
_KIND_FIELDS = frozenset().union(*NODE_KIND_FIELDS.values())


class AttachmentInfo(WireModel):
    """What is known of an attachment: never its bytes (a file's are uploaded elsewhere)."""

    type: Literal["file", "file_data", "url"] | None = None
    name: Name | None = None
    url: str | None = Field(default=None, max_length=8192)
    key: str | None = Field(default=None, max_length=2048)
    mime_type: Name | None = None
    size: TokenCount | None = Field(default=None, description="Bytes, when the caller says.")


class NodeBody(_TreeNode):
    """A tool call, retrieval, event, error or attachment in a trace (``trace_id``; its
    ``parent_id`` a span, generation or retrieval, None under the trace), or a session's own
    node and its events and attachments (``session_id``, no ``trace_id``). Created,
    updated and ended like a span; the fields of one kind only (``NODE_KIND_FIELDS``)."""

    kind: NodeKind
    trace_id: EntityId | None = None
    session_id: EntityId | None = None
    parent_id: EntityId | None = None
    description: str | None = Field(default=None, max_length=16384)
    args: str | None = Field(default=None, description="A tool call's arguments.")
    result: str | None = Field(default=None, description="A tool call's result.")
    error: GenerationFailure | None = Field(default=None, description="A tool call's or error's.")
    query: str | None = Field(default=None, description="A retrieval's input query.")
    documents: list[str] | None = Field(default=None, description="A retrieval's output.")
    attachment: AttachmentInfo | None = None

    @model_validator(mode="after")
    def _kind_rules(self) -> NodeBody:
        if self.trace_id is None and self.session_id is None:
            raise PydanticCustomError(
                "missing_identity", "one of trace_id or session_id is required",
                {"field": "trace_id"},
            )  # fmt: skip
        allowed = NODE_KIND_FIELDS[self.kind]
        for name in sorted((self.model_fields_set & _KIND_FIELDS) - allowed):
            if getattr(self, name) is not None:
                raise PydanticCustomError(
                    "kind_field", "is not a field of a {kind} node",
                    {"kind": self.kind, "field": name},
                )  # fmt: skip
        return self
