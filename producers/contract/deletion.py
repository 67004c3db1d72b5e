"""The deletion of one entity: a log, a trace node, a span, a generation, or one of Maxim's
other nodes (a tool call, retrieval, event, error, attachment, a session's own node).

A ``delete`` event travels on the raw topic like every other event, routed with the
entity's other events (a log by reference id, else id), so that stage 1 replaces the
entity's state by a tombstone that drops every later event of it, the sink removes its
rows (a log's feedback with it, a trace's or a session's node's too) and the trace,
session and prompt-version totals lose its contribution; a replay or an import of the
history does the same. Deleting a whole trace or session is one event per member: the
gateway and ``logflume delete`` resolve the members from what PostgreSQL stores.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from .log import require_one_of
from .maxim import NODE_KINDS
from .types import EntityId, WireModel

__all__ = ["DELETABLE_KINDS", "DeleteBody"]

DELETABLE_KINDS = ("log", "trace", "span", "generation", *NODE_KINDS)


class DeleteBody(WireModel):
    """Which entity to erase: a log by ``reference_id`` or ``id``, a node by ``id``."""

    kind: Literal[
        "log", "trace", "span", "generation",
        "tool_call", "retrieval", "event", "error", "attachment", "session",
    ]  # fmt: skip
    id: EntityId | None = None
    reference_id: EntityId | None = None

    @model_validator(mode="after")
    def _has_target(self) -> DeleteBody:
        if self.kind != "log":
            if self.reference_id is not None:
                raise PydanticCustomError(
                    "log_only", "only a log has a reference_id", {"field": "reference_id"}
                )
            require_one_of(self, "id")
        require_one_of(self, "reference_id", "id")
        return self
