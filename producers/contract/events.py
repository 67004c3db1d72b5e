"""The event envelope, the discriminated union of all events, and parsing with clear errors.

Every event is ``{event_id, type, ts, project, body}``. ``event_id`` is unique per emission
(a retry re-sends the same id), ``ts`` is the timezone-aware emit time. ``EVENT_ADAPTER`` is
the one module-level TypeAdapter; parse wire bytes with :func:`parse_event`, which checks
the size limit first and turns every validation failure into a :class:`ContractError`
whose entries name the field and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import ErrorDetails

from .deletion import DeleteBody
from .log import FeedbackBody, LogBody, LogUpdateBody
from .maxim import (
    GenerationBody,
    GenerationErrorBody,
    GenerationResultBody,
    NodeBody,
    SpanBody,
    TraceBody,
)
from .types import (
    ID_PATTERN,
    ID_RULE,
    PROJECT_PATTERN,
    PROJECT_RULE,
    EntityId,
    ProjectName,
    WireModel,
)

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "ContractError",
    "DeleteEvent",
    "Event",
    "EventBase",
    "FeedbackEvent",
    "FieldError",
    "GenerationErrorEvent",
    "GenerationEvent",
    "GenerationResultEvent",
    "LogEvent",
    "LogUpdateEvent",
    "NodeEvent",
    "SpanEvent",
    "TraceEvent",
    "encode_event",
    "error_reason",
    "event_json_schema",
    "parse_event",
    "validate_event",
]

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


class EventBase(WireModel):
    event_id: EntityId = Field(description="Unique per emission; a retry re-sends the same id.")
    ts: AwareDatetime = Field(description="When the event was emitted (timezone-aware).")
    project: ProjectName = Field(description="The project the event belongs to.")

    @model_validator(mode="after")
    def _type_is_always_carried(self) -> EventBase:
        # `type` has a default for convenience in Python; it must still reach the wire when
        # events are dumped with exclude_unset (which keeps updates' "fields carried" exact).
        self.__pydantic_fields_set__.add("type")
        return self


class LogEvent(EventBase):
    type: Literal["log"] = "log"
    body: LogBody


class LogUpdateEvent(EventBase):
    type: Literal["log_update"] = "log_update"
    body: LogUpdateBody


class FeedbackEvent(EventBase):
    type: Literal["feedback"] = "feedback"
    body: FeedbackBody


class TraceEvent(EventBase):
    type: Literal["trace"] = "trace"
    body: TraceBody


class SpanEvent(EventBase):
    type: Literal["span"] = "span"
    body: SpanBody


class GenerationEvent(EventBase):
    type: Literal["generation"] = "generation"
    body: GenerationBody


class GenerationResultEvent(EventBase):
    type: Literal["generation_result"] = "generation_result"
    body: GenerationResultBody


class GenerationErrorEvent(EventBase):
    type: Literal["generation_error"] = "generation_error"
    body: GenerationErrorBody


class NodeEvent(EventBase):
    type: Literal["node"] = "node"
    body: NodeBody


class DeleteEvent(EventBase):
    type: Literal["delete"] = "delete"
    body: DeleteBody


Event = Annotated[
    LogEvent
    | LogUpdateEvent
    | FeedbackEvent
    | TraceEvent
    | SpanEvent
    | GenerationEvent
    | GenerationResultEvent
    | GenerationErrorEvent
    | NodeEvent
    | DeleteEvent,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: tuple[str, ...] = (
    "log",
    "log_update",
    "feedback",
    "trace",
    "span",
    "generation",
    "generation_result",
    "generation_error",
    "node",
    "delete",
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an event was rejected: a dotted field path (``body.prompt_tokens``)."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class ContractError(ValueError):
    """An event broke the wire contract. ``errors`` names every field and reason."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(e.field for e in self.errors)


def parse_event(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Event:
    """Validate one JSON-encoded event; raises :class:`ContractError`."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise ContractError([_too_large(size, max_bytes)])
    try:
        return EVENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise ContractError(_field_errors(exc)) from None


def validate_event(obj: Any) -> Event:
    """Validate one event given as Python objects; raises :class:`ContractError`."""
    try:
        return EVENT_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise ContractError(_field_errors(exc)) from None


def encode_event(event: Event, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> bytes:
    """The wire bytes of an event: only the fields it carries, so updates stay exact."""
    data = EVENT_ADAPTER.dump_json(event, exclude_unset=True)
    if len(data) > max_bytes:
        raise ContractError([_too_large(len(data), max_bytes)])
    return data


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of one event (what ``logflume schema`` prints)."""
    return EVENT_ADAPTER.json_schema()


def _too_large(size: int, limit: int) -> FieldError:
    return FieldError("event", f"is {size} bytes, over the limit of {limit} bytes")


# Names pydantic puts in an error's location for the member of a union that failed; they
# are not fields, so they are dropped from the path we report.
_UNION_MEMBER_NAMES = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def _field_path(error: ErrorDetails) -> str:
    parts: list[str] = []
    loc = list(error["loc"])
    if loc and loc[0] in EVENT_TYPES:
        loc = loc[1:]  # the discriminator's tag, not a field
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part not in _UNION_MEMBER_NAMES and "[" not in part and "-" not in part:
            parts.append(f".{part}" if parts else part)
    extra = (error.get("ctx") or {}).get("field")
    if extra:
        parts.append(f".{extra}" if parts else str(extra))
    return "".join(parts) or "event"


def error_reason(error: ErrorDetails) -> str:
    """The contract's words for one pydantic error (ids, projects and own rules in plain
    words rather than their patterns)."""
    kind = error["type"]
    if kind == "union_tag_invalid":
        tag = (error.get("ctx") or {}).get("tag")
        return f"unknown event type {tag!r}; expected one of {', '.join(EVENT_TYPES)}"
    if kind == "union_tag_not_found":
        return f"is required; one of {', '.join(EVENT_TYPES)}"
    if kind == "extra_forbidden":
        return "is not a field of this event"
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch":
        pattern = error["ctx"]["pattern"]
        if pattern == ID_PATTERN:
            return ID_RULE
        if pattern == PROJECT_PATTERN:
            return PROJECT_RULE
    if kind == "value_error":  # a rule of our own (an AfterValidator): its words alone
        return str(error["ctx"]["error"])
    if kind == "json_invalid":
        return f"is not valid JSON ({error['ctx']['error']})"
    return str(error["msg"])


def _field_errors(exc: ValidationError) -> list[FieldError]:
    """One entry per field; a field that failed every member of a union appears once."""
    by_field: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        field = _field_path(error)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field = "type"
        reasons = by_field.setdefault(field, [])
        reason = error_reason(error)
        if reason not in reasons:
            reasons.append(reason)
    return [FieldError(field, " or ".join(reasons)) for field, reasons in by_field.items()]
