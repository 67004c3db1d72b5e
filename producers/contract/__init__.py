"""The wire contract: pydantic v2 models of every event logflume carries.

``producers`` owns it; ``processors`` and ``sinks`` import it, never the reverse.
Parse wire bytes with :func:`parse_event`, build events in Python and encode them with
:func:`encode_event`. Every rejection is a :class:`ContractError` naming field and reason.
"""

from .deletion import DELETABLE_KINDS, DeleteBody
from .events import (
    DEFAULT_MAX_EVENT_BYTES,
    EVENT_ADAPTER,
    EVENT_TYPES,
    ContractError,
    DeleteEvent,
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
from .log import LOG_KINDS, FeedbackBody, LogBody, LogFields, LogUpdateBody, PromptKernel
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
from .privacy import (
    LOG_TYPES,
    carries_payload,
    event_without_payload,
    log_handles,
    says_unsaved,
    without_payload,
)
from .records import entity_identity, pack_record, partition_for, routing_key, unpack_record
from .types import ChatMessage, ToolCall, ToolChoiceFunction
from .views import CreateLogResponse, LogResponse, ObservabilityStatus

__all__ = [
    "CARRIED",
    "DEFAULT_MAX_EVENT_BYTES",
    "DELETABLE_KINDS",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "LOG_KINDS",
    "LOG_TYPES",
    "PAYLOAD_FIELDS",
    "ChatCompletion",
    "ChatCompletionChoice",
    "ChatMessage",
    "ContractError",
    "CreateLogResponse",
    "DeleteBody",
    "DeleteEvent",
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
    "carries_payload",
    "encode_event",
    "entity_identity",
    "event_json_schema",
    "event_without_payload",
    "log_handles",
    "merge_carried",
    "pack_record",
    "parse_event",
    "partition_for",
    "routing_key",
    "says_unsaved",
    "unpack_record",
    "validate_event",
    "without_payload",
]
