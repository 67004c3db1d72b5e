"""A cheaper first check of events, before the contract's: a msgspec mirror of its models.

The contract's pydantic models (``producers.contract``) are the single source of truth: for
the JSON Schema, for what the consumer accepts and for every error message. Validating a log
body with them costs ~6 µs on this machine (a 45-field model, even for a body with only an
id), the largest share of the SDK's CPU per event, and a record of the benchmarks' mix ~9 µs
per event in stage 1. This module mirrors the bodies of every type but ``node`` and
``delete`` (rarer; they always go to the contract) and the envelope, and decodes the same
bytes in ~1-2 µs per body (:func:`fast_identity`, the SDK) or ~4 µs per event of a whole
record with its rules (:func:`fast_record`, stage 1), used in one direction only:

* **accept**: the mirror accepts only bodies the contract accepts. Where a rule is awkward to
  mirror exactly it is made *stricter* here (ids of at most 512 characters, which always fit
  the contract's 2,048 UTF-8 bytes; timestamps in one RFC 3339 form; paths of printable
  characters with no segment starting with a dot; finite floats below 1e300; no string
  holding U+0000), so a body it accepts is always valid;
* **anything else** (a body the mirror rejects, or one it cannot judge) goes to the contract's
  own ``validate_json``, which accepts it or names the fields exactly as before.

So a gap in the mirror costs time, never correctness, as long as the mirror is never *looser*
than the contract. ``tests/unit/test_mirror.py`` guards that: a corpus of valid and
invalid bodies and records plus hypothesis-generated ones must get the same verdict from both (for
bodies the mirror rejects, the contract must reject them too, or they must be one of the
documented stricter cases), and a fingerprint of the contract models' JSON Schema fails the
test when the contract changes, so that the mirror is reviewed with it.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgspec
from msgspec import Meta

__all__ = ["FAST_TYPES", "FastEvent", "fast_identity", "fast_record"]

# Stricter than the contract's EntityId (1..1,024 characters and 2,048 bytes, no NUL): at most
# 512 characters always fit 2,048 bytes; NUL is checked on the bytes (see fast_identity).
_Id = Annotated[str, Meta(min_length=1, max_length=512)]
_Name = Annotated[str, Meta(max_length=1024)]
_Short = Annotated[str, Meta(max_length=256)]
# The contract's PromptPath (no control characters, at most 512, no empty, "." or ".."
# segment): the length here, the rest in _path_ok, stricter.
_Path = Annotated[str, Meta(max_length=512)]
# AwareDatetime: only the form SDK callers and ``datetime.isoformat()`` produce, with an
# offset; the value itself is checked with datetime.fromisoformat.
_Time = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
        r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z"
    ),
]
_Tokens = Annotated[int, Meta(ge=0, le=10**12)]
_Cost = Annotated[float, Meta(ge=0, le=10**9)]
_Seconds = Annotated[float, Meta(ge=0, le=1e300)]
_Finite = Annotated[float, Meta(ge=-1e300, le=1e300)]
_Object = dict[str, Any]


class _ToolCallFunction(msgspec.Struct, frozen=True):
    name: _Name
    arguments: str = ""


class _ToolCall(msgspec.Struct, frozen=True):
    id: _Short
    function: _ToolCallFunction
    type: Literal["function"] = "function"


class _ChatMessage(msgspec.Struct, frozen=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_Object] | None = None
    name: _Name | None = None
    tool_call_id: _Short | None = None
    tool_calls: list[_ToolCall] | None = None


class _FunctionName(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: _Name


class _ToolChoiceFunction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["function"]
    function: _FunctionName


class _PromptKernel(msgspec.Struct, frozen=True):
    model: _Name
    endpoint: Literal["complete", "chat", "edit"] | None = None
    template: str | list[_ChatMessage] | None = None
    template_language: Literal["default", "jinja"] | None = None
    provider: _Name | None = None
    max_tokens: Annotated[int, Meta(ge=-1)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    presence_penalty: Annotated[float, Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Meta(ge=-2, le=2)] | None = None
    other: _Object | None = None
    seed: int | None = None
    response_format: _Object | None = None
    reasoning_effort: str | None = None
    tools: list[_Object] | None = None
    linked_tools: list[str] | None = None
    attributes: _Object | None = None


class _LogFields(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    messages: list[_ChatMessage] | None = None
    inputs: _Object | None = None
    output: str | None = None
    output_message: _ChatMessage | None = None
    raw_output: str | None = None
    finish_reason: _Name | None = None
    tools: list[_Object] | None = None
    tool_choice: Literal["none", "auto", "required"] | _ToolChoiceFunction | None = None
    error: str | None = None
    stdout: str | None = None
    provider_request: _Object | None = None
    provider_response: _Object | None = None
    prompt_tokens: _Tokens | None = None
    output_tokens: _Tokens | None = None
    cached_tokens: _Tokens | None = None
    reasoning_tokens: _Tokens | None = None
    prompt_cost: _Cost | None = None
    output_cost: _Cost | None = None
    start_time: _Time | None = None
    end_time: _Time | None = None
    provider_latency: _Seconds | None = None
    duration: _Seconds | None = None
    metadata: _Object | None = None
    source: _Name | None = None
    user: _Name | None = None
    environment: _Name | None = None
    judgment: bool | _Finite | list[str] | str | None = None
    config_id: _Id | None = None
    evaluation_id: _Id | None = None
    source_datapoint_id: _Id | None = None
    batches: list[_Id] | None = None
    session_id: _Id | None = None
    session_reference_id: _Id | None = None
    parent_id: _Id | None = None
    parent_reference_id: _Id | None = None
    log_status: Literal["incomplete", "complete"] | None = None
    marked_completed: bool | None = None


class _LogBody(_LogFields, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: _Id
    reference_id: _Id | None = None
    path: _Path | None = None
    prompt_id: _Id | None = None
    prompt: _PromptKernel | None = None
    version_id: _Id | None = None
    log_kind: Literal["prompt", "flow", "tool", "evaluator"] | None = None
    file: _Object | None = None
    trace_id: _Id | None = None
    trace_parent_log_id: _Id | None = None
    created_at: _Time | None = None
    save: bool = True


class _LogUpdateBody(_LogFields, frozen=True, forbid_unknown_fields=True):
    id: _Id | None = None
    reference_id: _Id | None = None


def _times_ok(body: _LogFields, created_at: str | None = None) -> bool:
    """The timestamps parse, and end_time is not before start_time (the contract's rule)."""
    start = end = None
    try:
        if body.start_time is not None:
            start = datetime.fromisoformat(body.start_time)
        if body.end_time is not None:
            end = datetime.fromisoformat(body.end_time)
        if created_at is not None:
            datetime.fromisoformat(created_at)
    except ValueError:
        return False
    return start is None or end is None or end >= start


def _path_ok(path: str) -> bool:
    """Stricter than the contract's PromptPath: printable characters only (so none of
    U+0000-U+001F), and no segment empty or starting with "." (a regular expression for the
    same costs ~0.3 µs more per log)."""
    return (
        path.isprintable()
        and path[:1] not in "/."  # also the empty path
        and path[-1] != "/"
        and "//" not in path
        and "/." not in path
    )


def _log_identity(body: _LogBody) -> str | None:
    if body.path is not None and not _path_ok(body.path):
        return None
    if body.session_id is not None and body.session_reference_id is not None:
        return None
    if body.parent_id is not None and body.parent_reference_id is not None:
        return None
    kind = body.log_kind or "prompt"  # the contract's rules of a log's kind
    if kind != "prompt" and body.prompt is not None:
        return None
    if kind == "prompt" and body.file is not None:
        return None
    if kind == "evaluator" and body.parent_id is None and body.parent_reference_id is None:
        return None
    if (
        body.start_time is not None or body.end_time is not None or body.created_at is not None
    ) and not _times_ok(body, body.created_at):
        return None
    return body.reference_id or body.id


def _log_update_identity(body: _LogUpdateBody) -> str | None:
    if (body.start_time is not None or body.end_time is not None) and not _times_ok(body):
        return None
    return body.reference_id or body.id  # None when neither: the contract names the field


# -- Maxim's tree and feedback ---------------------------------------------------------------

_Action = Literal["create", "update", "end"]
_Tags = dict[Annotated[str, Meta(max_length=256)], Annotated[str, Meta(max_length=4096)]]
_Judgment = bool | _Finite | list[str] | str


class _FeedbackBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: _Id
    log_id: _Id | None = None
    reference_id: _Id | None = None
    trace_id: _Id | None = None
    session_id: _Id | None = None
    value: _Judgment
    comment: Annotated[str, Meta(max_length=65536)] | None = None
    source: _Name | None = None
    user: _Name | None = None
    metadata: _Object | None = None
    created_at: _Time | None = None


class _TreeNode(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: _Id
    action: _Action = "create"
    name: _Name | None = None
    tags: _Tags | None = None
    metadata: _Object | None = None
    start_time: _Time | None = None
    end_time: _Time | None = None
    metrics: _Object | None = None


class _TraceBody(_TreeNode, frozen=True, forbid_unknown_fields=True, kw_only=True):
    session_id: _Id | None = None
    input: str | None = None
    output: str | None = None


class _SpanBody(_TreeNode, frozen=True, forbid_unknown_fields=True, kw_only=True):
    trace_id: _Id
    parent_id: _Id | None = None
    input: str | None = None


class _CallerCost(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    input: _Cost | None = None
    output: _Cost | None = None
    total: _Cost


class _GenerationBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: _Id
    action: _Action = "create"
    trace_id: _Id
    parent_id: _Id | None = None
    name: _Name | None = None
    provider: _Name | None = None
    model: _Name | None = None
    model_parameters: _Object | None = None
    messages: list[_ChatMessage] = msgspec.field(default_factory=list)
    add_messages: list[_ChatMessage] | None = None
    tags: _Tags | None = None
    metadata: _Object | None = None
    metrics: _Object | None = None
    cost: _CallerCost | None = None
    start_time: _Time | None = None
    end_time: _Time | None = None


# Providers' objects (the contract's ProviderObject): known fields checked, others kept.
class _PromptTokensDetails(msgspec.Struct, frozen=True):
    cached_tokens: _Tokens | None = None
    audio_tokens: _Tokens | None = None


class _CompletionTokensDetails(msgspec.Struct, frozen=True):
    reasoning_tokens: _Tokens | None = None
    audio_tokens: _Tokens | None = None
    accepted_prediction_tokens: _Tokens | None = None
    rejected_prediction_tokens: _Tokens | None = None


class _Usage(msgspec.Struct, frozen=True):
    prompt_tokens: _Tokens = 0
    completion_tokens: _Tokens = 0
    total_tokens: _Tokens | None = None
    prompt_tokens_details: _PromptTokensDetails | None = None
    completion_tokens_details: _CompletionTokensDetails | None = None


class _Choice(msgspec.Struct, frozen=True, kw_only=True):
    index: Annotated[int, Meta(ge=0)] = 0
    message: _ChatMessage
    finish_reason: _Name | None = None
    logprobs: Any = None


class _ChatCompletion(msgspec.Struct, frozen=True, kw_only=True):
    id: _Short
    object: Annotated[str, Meta(max_length=64)] | None = "chat.completion"
    created: Annotated[int, Meta(ge=0)]
    model: _Name | None = None
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None


class _GenerationResultBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    generation_id: _Id
    trace_id: _Id
    result: _ChatCompletion
    end_time: _Time | None = None


class _Failure(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    message: str
    code: _Short | None = None
    type: _Short | None = None


class _GenerationErrorBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    generation_id: _Id
    trace_id: _Id
    error: _Failure
    end_time: _Time | None = None


def _parses(*times: str | None) -> bool:
    try:
        for text in times:
            if text is not None:
                datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _feedback_identity(body: _FeedbackBody) -> str | None:
    if not _parses(body.created_at):
        return None
    return body.reference_id or body.log_id or body.trace_id or body.session_id


def _node_identity(body: _TraceBody | _SpanBody) -> str | None:
    return body.id if _parses(body.start_time, body.end_time) else None


def _generation_identity(body: _GenerationBody) -> str | None:
    if body.action == "create" and (body.provider is None or body.model is None):
        return None  # the contract names the missing field
    return body.id if _parses(body.start_time, body.end_time) else None


def _outcome_identity(body: _GenerationResultBody | _GenerationErrorBody) -> str | None:
    return body.generation_id if _parses(body.end_time) else None


# -- the checks, per event type ---------------------------------------------------------

_Rule = Callable[[Any], str | None]
_BODIES: Final[dict[str, tuple[type[msgspec.Struct], _Rule]]] = {
    "log": (_LogBody, _log_identity),
    "log_update": (_LogUpdateBody, _log_update_identity),
    "feedback": (_FeedbackBody, _feedback_identity),
    "trace": (_TraceBody, _node_identity),
    "span": (_SpanBody, _node_identity),
    "generation": (_GenerationBody, _generation_identity),
    "generation_result": (_GenerationResultBody, _outcome_identity),
    "generation_error": (_GenerationErrorBody, _outcome_identity),
}
_CHECKS: Final[dict[str, tuple[msgspec.json.Decoder[Any], _Rule]]] = {
    etype: (msgspec.json.Decoder(struct), rule) for etype, (struct, rule) in _BODIES.items()
}
FAST_TYPES: Final = frozenset(_CHECKS)


_BACKSLASH: Final = ord("\\")


def fast_identity(etype: str, body_bytes: bytes) -> str | None:
    """The entity identity of a body the mirror accepts (so the contract accepts it too), or
    None: the mirror does not judge this body, ask the contract."""
    check = _CHECKS.get(etype)
    # JSON escapes every control character, so a NUL inside any string shows as \u0000 (a
    # literal "\u0000" in a string shows as \\u0000 and is sent to the contract too). A
    # body without a backslash has none: that test is a memchr (~20 ns for a typical log,
    # the search for the sequence ~300 ns).
    if check is None or (_BACKSLASH in body_bytes and b"\\u0000" in body_bytes):
        return None
    decoder, identity = check
    try:
        body = decoder.decode(body_bytes)
    except msgspec.DecodeError:  # ValidationError included
        return None
    return identity(body)


# -- whole records (stage 1) -------------------------------------------------------------

# The contract's ProjectName; ``\Z`` where pydantic's ``$`` (Python's ``$`` also matches
# before a final newline).
_Project = Annotated[
    str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*\Z")
]


class _Envelope(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"
):
    event_id: _Id
    ts: _Time
    project: _Project


def _envelope(etype: str, struct: type[msgspec.Struct]) -> type[_Envelope]:
    return msgspec.defstruct(
        f"_{struct.__name__.strip('_')}Event",
        [("body", struct)],
        bases=(_Envelope,),
        tag=etype,
        frozen=True,
        forbid_unknown_fields=True,
        kw_only=True,
    )


_ENVELOPES: Final = {etype: _envelope(etype, struct) for etype, (struct, _) in _BODIES.items()}
_RULES: Final = {_ENVELOPES[etype]: (etype, rule) for etype, (_, rule) in _BODIES.items()}
_ANY_EVENT: Final = functools.reduce(operator.or_, _ENVELOPES.values())  # a union of them all
_RECORD: Final = msgspec.json.Decoder(list[_ANY_EVENT])  # type: ignore[valid-type]


class FastEvent(NamedTuple):
    """What the mirror found of one event of a record it accepts whole."""

    type: str
    identity: str
    ts: datetime


def fast_record(value: bytes) -> list[FastEvent] | None:
    """Type, entity identity and emit time of every event of a raw record (a JSON array of
    events) when the mirror accepts each of them, so that the contract accepts them too;
    None otherwise (a type it does not mirror, a NUL, any doubt): ask the contract."""
    if b"\\u0000" in value:
        return None
    try:
        envelopes = _RECORD.decode(value)
    except msgspec.DecodeError:
        return None
    events: list[FastEvent] = []
    for envelope in envelopes:
        etype, rule = _RULES[type(envelope)]
        identity = rule(envelope.body)
        if identity is None:
            return None
        try:
            ts = datetime.fromisoformat(envelope.ts)
        except ValueError:
            return None
        events.append(FastEvent(etype, identity, ts))
    return events
