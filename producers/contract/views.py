"""Read-side shapes of the contract: what the API answers for a log.

These follow the seed pages: the "Log to a Prompt" response and the "Retrieve a log by log
id" response. The sinks store what these need; the gateway serves them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from .log import LogFields
from .types import EntityId, JsonObject, Name, StrictBool, TokenCount, WireModel

__all__ = ["CreateLogResponse", "LogResponse", "ObservabilityStatus"]

ObservabilityStatus = Literal["pending", "running", "completed", "failed"]


class CreateLogResponse(WireModel):
    """Answer to "Log to a Prompt"."""

    id: EntityId
    prompt_id: EntityId | None = None
    version_id: EntityId | None = None
    session_id: EntityId | None = None


class LogResponse(LogFields):
    """Answer to "Retrieve a log by log id": every field of the stored log."""

    id: EntityId
    observability_status: ObservabilityStatus
    updated_at: AwareDatetime
    config: JsonObject | None = None
    evaluation_results: list[JsonObject] = Field(default_factory=list)
    project: Name | None = None
    project_id: EntityId | None = None
    reference_id: EntityId | None = None
    save: StrictBool | None = None
    created_at: AwareDatetime | None = None
    tokens: TokenCount | None = None
    feedback: list[JsonObject] | None = None
    batch_ids: list[EntityId] | None = None
    # logflume additions: where the log sits and where its cost came from.
    prompt_id: EntityId | None = None
    version_id: EntityId | None = None
    trace_id: EntityId | None = None
    trace_parent_log_id: EntityId | None = None
    log_kind: Literal["prompt", "flow", "tool", "evaluator"] = "prompt"
    cost_source: Literal["provided", "computed", "unknown"] | None = None
