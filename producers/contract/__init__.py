"""The wire contract: pydantic v2 models of every event logflume carries.

``producers`` owns it; ``processors`` and ``sinks`` import it, never the reverse.
Parse wire bytes with :func:`parse_event`, build events in Python and encode them with
:func:`encode_event`. Every rejection is a :class:`ContractError` naming field and reason.
"""

from .events import (
    DEFAULT_MAX_EVENT_BYTES,
    EVENT_ADAPTER,
    EVENT_TYPES,
    ContractError,
    Event,
    EventBase,
    FeedbackEvent,
    FieldError,
    GenerationErrorEvent,
    GenerationEvent,
    GenerationResultEvent,
    LogEvent,
    LogUpdateEvent,
    SpanEvent,
    TraceEvent,
    encode_event,
    event_json_schema,
    parse_event,
    validate_event,
)
from .log import FeedbackBody, LogBody, LogFields, LogUpdateBody, PromptKernel
from .maxim import (
    ChatCompletion,
    ChatCompletionChoice,
    GenerationBody,
    GenerationErrorBody,
    GenerationFailure,
    GenerationResultBody,
    SpanBody,
    TraceBody,
    Usage,
)
from .outputs import CARRIED, PAYLOAD_FIELDS, merge_carried
from .records import entity_identity, pack_record, partition_for, routing_key, unpack_record
from .types import ChatMessage, ToolCall, ToolChoiceFunction
from .views import CreateLogResponse, LogResponse, ObservabilityStatus

__all__ = [
    "CARRIED",
    "DEFAULT_MAX_EVENT_BYTES",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "PAYLOAD_FIELDS",
    "ChatCompletion",
    "ChatCompletionChoice",
    "ChatMessage",
    "ContractError",
    "CreateLogResponse",
    "Event",
    "EventBase",
    "FeedbackBody",
    "FeedbackEvent",
    "FieldError",
    "GenerationBody",
    "GenerationErrorBody",
    "GenerationErrorEvent",
    "GenerationEvent",
    "GenerationFailure",
    "GenerationResultBody",
    "GenerationResultEvent",
    "LogBody",
    "LogEvent",
    "LogFields",
    "LogResponse",
    "LogUpdateBody",
    "LogUpdateEvent",
    "ObservabilityStatus",
    "PromptKernel",
    "SpanBody",
    "SpanEvent",
    "ToolCall",
    "ToolChoiceFunction",
    "TraceBody",
    "TraceEvent",
    "Usage",
    "encode_event",
    "entity_identity",
    "event_json_schema",
    "merge_carried",
    "pack_record",
    "parse_event",
    "partition_for",
    "routing_key",
    "unpack_record",
    "validate_event",
]
