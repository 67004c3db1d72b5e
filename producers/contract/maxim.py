"""Maxim-style bodies: traces, spans, generations and a generation's result or error.

Maxim's logger builds a tree: ``trace.span(...)``, ``span.generation(...)`` (or
``trace.generation(...)``), then ``generation.result(chat_completion)``. Every node below a
trace carries ``trace_id`` so that each event can be routed and assembled on its own,
whatever order the events arrive in.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field

from .types import (
    ChatMessage,
    EntityId,
    JsonObject,
    Name,
    ProviderObject,
    Tags,
    TokenCount,
    WireModel,
)

__all__ = [
    "ChatCompletion",
    "ChatCompletionChoice",
    "GenerationBody",
    "GenerationErrorBody",
    "GenerationFailure",
    "GenerationResultBody",
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


class TraceBody(_TreeNode):
    """``logger.trace(...)``, ``trace.set_input/set_output/add_tag``, ``trace.end()``."""

    session_id: EntityId | None = None
    input: str | None = None
    output: str | None = None


class SpanBody(_TreeNode):
    """``trace.span(...)`` / ``span.span(...)``; ``parent_id`` is None directly under the trace."""

    trace_id: EntityId
    parent_id: EntityId | None = None


class GenerationBody(WireModel):
    """``span.generation(...)`` or ``trace.generation(...)``: one LLM call being made."""

    id: EntityId
    trace_id: EntityId
    parent_id: EntityId | None = Field(default=None, description="Span id; None under the trace.")
    name: Name | None = None
    provider: Name
    model: Name
    model_parameters: JsonObject | None = None
    messages: list[ChatMessage] = Field(default_factory=list)
    tags: Tags | None = None
    metadata: JsonObject | None = None
    start_time: AwareDatetime | None = None


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
