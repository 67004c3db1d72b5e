"""Request shapes the routes document in OpenAPI (the routes validate with the contract).

They describe what the official SDKs send: Humanloop's ``prompts/log`` request (its ``id``
is the Prompt's, ``log_id`` the log's), the older ``POST /logs`` item, a log update, and
the native batch of envelopes. Answers that are not read-side views live here too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from producers.contract import Event, LogFields, PromptKernel
from producers.contract.types import EntityId, JsonObject, PromptPath

__all__ = [
    "BatchAnswer",
    "EvaluatorLogRequest",
    "EventVerdict",
    "FieldProblem",
    "FlowLogRequest",
    "LegacyLogRequest",
    "LogUpdateRequest",
    "MaximAnswer",
    "MaximErrorAnswer",
    "NativeBatch",
    "PromptLogRequest",
    "ToolLogRequest",
]


class PromptLogRequest(LogFields):
    """Humanloop's "Log to a Prompt" request."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="PromptLogRequest")

    path: PromptPath | None = None
    id: EntityId | None = Field(default=None, description="ID of an existing Prompt.")
    log_id: EntityId | None = Field(default=None, description="The log's id (else generated).")
    prompt: PromptKernel | None = None
    reference_id: EntityId | None = None
    trace_id: EntityId | None = None
    trace_parent_id: EntityId | None = None
    created_at: AwareDatetime | None = None
    save: bool | None = None
    run_id: str | None = Field(default=None, description="Accepted and ignored.")


class FlowLogRequest(PromptLogRequest):
    """Humanloop's "Log to a Flow" request: the root of a trace (``log_status``
    ``incomplete`` until ``flows.update_log`` marks it ``complete``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="FlowLogRequest")

    prompt: None = None
    flow: JsonObject | None = Field(default=None, description="The Flow's kernel.")


class ToolLogRequest(PromptLogRequest):
    """Humanloop's "Log to a Tool" request."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="ToolLogRequest")

    prompt: None = None
    tool: JsonObject | None = Field(default=None, description="The Tool's kernel.")


class EvaluatorLogRequest(PromptLogRequest):
    """Humanloop's evaluator log: a judgment on the log ``parent_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="EvaluatorLogRequest")

    prompt: None = None
    parent_id: EntityId
    spec: JsonObject | None = Field(default=None, description="The Evaluator's spec.")


class LegacyLogRequest(PromptLogRequest):
    """One log of the older ``POST /logs`` (``project`` names the Prompt)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="LegacyLogRequest")

    project: PromptPath | None = None
    project_id: EntityId | None = None
    config: JsonObject | None = Field(
        default=None, description="The model config: `prompt`; its `id` is `config_id`."
    )
    feedback: list[JsonObject] | JsonObject | None = Field(
        default=None, description="One feedback entry or a list; every key of one is kept."
    )


class LogUpdateRequest(LogFields):
    """The fields to set on a logged datapoint (an explicit null clears one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="LogUpdateRequest")


NativeBatch = list[Event]


class FieldProblem(BaseModel):
    field: str
    reason: str


class EventVerdict(BaseModel):
    index: int
    event_id: str | None = None
    status: Literal["accepted", "rejected"]
    errors: list[FieldProblem] = Field(default_factory=list)


class BatchAnswer(BaseModel):
    accepted: int
    rejected: int
    delivery: Literal["sent", "spooled"] | None = None
    results: list[EventVerdict]


class MaximAnswer(BaseModel):
    """What ``POST /api/sdk/v3/log`` answers (Maxim's SDK reads only ``error``)."""

    data: dict[str, Any]


class MaximErrorDetail(BaseModel):
    message: str
    errors: list[FieldProblem] = Field(default_factory=list)


class MaximErrorAnswer(BaseModel):
    """A refusal on the Maxim routes: maxim-py raises ``error.message`` (for bad input,
    ``field: reason; ...``); ``error.errors`` lists each field and reason."""

    error: MaximErrorDetail
