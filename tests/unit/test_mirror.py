"""The contract's msgspec mirror never accepts what the contract rejects (the drift guard).

``producers.contract.mirror`` may be stricter than the contract (a body or record it rejects
is judged by the contract), never looser. Three guards: a corpus of valid and invalid bodies
with the verdict of both, hypothesis-generated bodies and records (every field of the
contract's JSON Schema set to edge values), and the fields and JSON Schema of the mirrored
models pinned, so that a change to the contract fails here until the mirror is reviewed
with it. The SDK checks bodies with it (``fast_identity``), stage 1 whole records
(``fast_record``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from logflume.synthetic import generate_events, pack_events
from producers.contract import (
    ContractError,
    Event,
    entity_identity,
    mirror,
    parse_event,
)
from producers.contract.mirror import FAST_TYPES, fast_identity, fast_record
from producers.sdk.encoding import _BODY_MODELS, _IDENTITY, EventEncoder

# The contract's body model of each type the mirror covers.
MODELS: dict[str, type[BaseModel]] = {t: m for t, m in _BODY_MODELS.items() if t in FAST_TYPES}
MIRRORS: dict[str, type[msgspec.Struct]] = {
    "log": mirror._LogBody,
    "log_update": mirror._LogUpdateBody,
    "feedback": mirror._FeedbackBody,
    "trace": mirror._TraceBody,
    "span": mirror._SpanBody,
    "generation": mirror._GenerationBody,
    "generation_result": mirror._GenerationResultBody,
    "generation_error": mirror._GenerationErrorBody,
}
# Reviewed against the mirror; a contract change makes this fail (see the module docstring).
SCHEMA_SHA256 = {
    "log": "0387d7482f6a7640bedd697abed69dd49d38deb841340aaedc6adac2f24f4555",
    "log_update": "b914088aa195d721e1444c3bb263c363b2c52bddf624765802dd287a89530b3f",
    "feedback": "978cc48291dfd6e9df999a9f12b79435132fd63f360f0b00de2e3fc1f047c3e7",
    "trace": "c681eabe2d5c466a4f4b6bb340dd5b2bb417ff8efcd3ee19667fe8529bd66edb",
    "span": "8774161f03a90f056175daf527c16451da6f958a5b33ef715a97a8e83e6d4e48",
    "generation": "a1cf0905eeef1e02eaafaa2a2142a54560bf8ff67c68b37db33e6ef49201de80",
    "generation_result": "f3514b1bbd9db18989b1f656c26f62cf00f78dc4763ab48aa1a92ada527eb185",
    "generation_error": "9700615e1bf4368e7f98cf4ccbe7fd279831ca1c6f2b278d0093dce67d8d471d",
}
# The least body of each type (what generated bodies start from).
BASES: dict[str, dict[str, Any]] = {
    "log": {"id": "d"},
    "log_update": {"reference_id": "r"},
    "feedback": {"id": "f", "reference_id": "r", "value": "good"},
    "trace": {"id": "t"},
    "span": {"id": "s", "trace_id": "t"},
    "generation": {"id": "g", "trace_id": "t", "provider": "openai", "model": "gpt-4o"},
    "generation_result": {
        "generation_id": "g",
        "trace_id": "t",
        "result": {"id": "c", "created": 1},
    },
    "generation_error": {"generation_id": "g", "trace_id": "t", "error": {"message": "x"}},
}

MESSAGES = [
    {"role": "system", "content": "You are a helpful support assistant."},
    {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ann"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f"}}],
        "refusal": None,  # a provider's newer field: kept
    },
]
PROMPT = {
    "model": "gpt-4o",
    "provider": "openai",
    "temperature": 0.7,
    "max_tokens": -1,
    "stop": ["\n"],
    "template": [{"role": "system", "content": "{{x}}"}],
    "vendor_knob": 3,  # providers' extras are kept
}
# Bodies both must accept; the mirror must accept them itself (the fast path is real).
VALID: list[tuple[str, dict[str, Any]]] = [
    ("log", {"id": "data_1"}),
    ("log", {"id": "data_1", "reference_id": "ticket-1", "path": "support/answer"}),
    (
        "log",
        {
            "id": "d",
            "path": "a b/c.d",
            "messages": MESSAGES,
            "output": "line 1\nline 2",
            "prompt_tokens": 0,
            "output_tokens": 10**12,
            "prompt_cost": 0,
            "output_cost": 0.5,
            "metadata": {"tier": "gold", "n": [1, 2.5, None, True]},
            "prompt": PROMPT,
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "judgment": ["a", "b"],
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-01T01:00:01.5+01:00",
            "created_at": "2026-01-01T00:00:00.123456+00:00",
            "session_id": "s-1",
            "parent_reference_id": "p-1",
            "batches": ["b1", "b2"],
            "save": False,
            "provider_latency": 0.9,
            "duration": 3,
        },
    ),
    ("log", {"id": "x" * 512, "judgment": True, "tool_choice": "auto"}),
    ("log", {"id": "ünïcødé/id", "judgment": 0.5, "output_message": MESSAGES[2]}),
    ("log", {"id": "d", "messages": None, "inputs": {}, "path": None}),
    (
        "log",
        {"id": "f", "log_kind": "flow", "file": {"attributes": {}}, "log_status": "incomplete"},
    ),
    ("log", {"id": "t", "log_kind": "tool", "trace_parent_log_id": "f"}),
    ("log", {"id": "e", "log_kind": "evaluator", "parent_id": "d", "marked_completed": True}),
    ("log", {"id": "p", "log_kind": "prompt", "prompt": PROMPT}),
    ("log_update", {"reference_id": "r", "output": "done", "provider_latency": 0.5}),
    ("log_update", {"reference_id": "r", "log_status": "complete"}),
    ("log_update", {"id": "data_1", "messages": MESSAGES, "judgment": "good"}),
    ("log_update", {"id": "data_1", "reference_id": "r", "metadata": None}),
    ("feedback", {"id": "f", "log_id": "l", "value": True, "comment": "ok", "user": "u"}),
    ("feedback", {"id": "f", "trace_id": "t", "value": 4.5, "metadata": {"k": [1]}}),
    (
        "feedback",
        {"id": "f", "session_id": "s", "value": ["a"], "created_at": "2026-01-01T00:00:00Z"},
    ),
    ("trace", {"id": "t", "name": "chat", "tags": {"env": "prod"}, "session_id": "s"}),
    ("trace", {"id": "t", "action": "end", "output": "bye", "end_time": "2026-01-01T00:00:01Z"}),
    ("trace", {"id": "t", "action": "update", "metrics": {"x": 1.5}, "input": "hi"}),
    ("span", {"id": "s", "trace_id": "t", "parent_id": "s0", "name": "retrieve"}),
    ("span", {"id": "s", "trace_id": "t", "action": "end", "end_time": "2026-01-01T00:00:00Z"}),
    (
        "generation",
        {
            "id": "g",
            "trace_id": "t",
            "parent_id": "s",
            "provider": "openai",
            "model": "gpt-4o",
            "model_parameters": {"temperature": 0.2},
            "messages": MESSAGES,
            "start_time": "2026-01-01T00:00:00.5+02:00",
            "cost": {"input": 0.1, "output": 0.2, "total": 0.3},
        },
    ),
    ("generation", {"id": "g", "trace_id": "t", "action": "update", "add_messages": MESSAGES}),
    ("generation", {"id": "g", "trace_id": "t", "action": "end", "model": "m"}),
    (
        "generation_result",
        {
            "generation_id": "g",
            "trace_id": "t",
            "result": {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1700000000,
                "model": "gpt-4o",
                "choices": [
                    {"index": 0, "message": MESSAGES[2], "finish_reason": "stop", "logprobs": None}
                ],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 7,
                    "total_tokens": 12,
                    "prompt_tokens_details": {"cached_tokens": 1, "new_one": 2},
                    "completion_tokens_details": {"reasoning_tokens": 3},
                },
                "system_fingerprint": "fp_1",
            },
            "end_time": "2026-01-01T00:00:02Z",
        },
    ),
    (
        "generation_error",
        {"generation_id": "g", "trace_id": "t", "error": {"message": "m", "code": "429"}},
    ),
]
# Bodies both must reject.
INVALID: list[tuple[str, dict[str, Any]]] = [
    ("log", {}),
    ("log", {"reference_id": "r"}),
    ("log", {"id": ""}),
    ("log", {"id": "a\x00b"}),
    ("log", {"id": "d", "reference_id": "\x00"}),
    ("log", {"id": "d", "unknown": 1}),
    ("log", {"id": None}),
    ("log", {"id": 5}),
    ("log", {"id": "d", "prompt_tokens": -1}),
    ("log", {"id": "d", "prompt_tokens": 10**12 + 1}),
    ("log", {"id": "d", "prompt_tokens": "5"}),
    ("log", {"id": "d", "prompt_tokens": True}),
    ("log", {"id": "d", "prompt_tokens": 1.5}),
    ("log", {"id": "d", "prompt_cost": -0.1}),
    ("log", {"id": "d", "prompt_cost": "1"}),
    ("log", {"id": "d", "provider_latency": -1}),
    ("log", {"id": "d", "save": "yes"}),
    ("log", {"id": "d", "save": None}),
    ("log", {"id": "d", "path": ""}),
    ("log", {"id": "d", "path": "a//b"}),
    ("log", {"id": "d", "path": "/a"}),
    ("log", {"id": "d", "path": "a/"}),
    ("log", {"id": "d", "path": "a/../b"}),
    ("log", {"id": "d", "path": "a/\nb"}),
    ("log", {"id": "d", "path": "ab\n"}),
    ("log", {"id": "d", "path": "x" * 513}),
    ("log", {"id": "d", "messages": [{"content": "no role"}]}),
    ("log", {"id": "d", "messages": [{"role": "robot"}]}),
    ("log", {"id": "d", "messages": {"role": "user"}}),
    ("log", {"id": "d", "messages": [{"role": "user", "tool_call_id": "x" * 257}]}),
    ("log", {"id": "d", "prompt": {"provider": "openai"}}),
    ("log", {"id": "d", "prompt": {"model": "m", "temperature": 2.5}}),
    ("log", {"id": "d", "prompt": {"model": "m", "endpoint": "stream"}}),
    ("log", {"id": "d", "tool_choice": "sometimes"}),
    ("log", {"id": "d", "tool_choice": {"type": "function", "function": {"name": "f", "x": 1}}}),
    ("log", {"id": "d", "judgment": {"score": 1}}),
    ("log", {"id": "d", "session_id": "s", "session_reference_id": "r"}),
    ("log", {"id": "d", "parent_id": "s", "parent_reference_id": "r"}),
    ("log", {"id": "d", "start_time": "2026-01-01T00:00:00"}),
    ("log", {"id": "d", "start_time": "2026-02-30T00:00:00Z"}),
    ("log", {"id": "d", "start_time": "yesterday"}),
    ("log", {"id": "d", "start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}),
    ("log", {"id": "d", "created_at": "2026-01-01T25:00:00Z"}),
    # Python's fromisoformat takes offset minutes of 60-99 (as the next hour); pydantic not
    ("log", {"id": "d", "start_time": "2026-01-01T00:00:00+05:60"}),
    ("trace", {"id": "t", "end_time": "2026-01-01T00:00:00-03:75"}),
    ("feedback", {"id": "f", "log_id": "l", "value": 1, "created_at": "2026-01-01T00:00:00+24:00"}),
    ("log", {"id": "d", "batches": ["ok", ""]}),
    ("log", {"id": "d", "finish_reason": "x" * 1025}),
    ("log", {"id": "d", "log_kind": "flow", "prompt": {"model": "m"}}),
    ("log", {"id": "d", "file": {"x": 1}}),
    ("log", {"id": "d", "log_kind": "prompt", "file": {}}),
    ("log", {"id": "d", "log_kind": "evaluator"}),
    ("log", {"id": "d", "log_kind": "agent"}),
    ("log", {"id": "d", "log_status": "done"}),
    ("log", {"id": "d", "marked_completed": "yes"}),
    ("log_update", {}),
    ("log_update", {"output": "no target"}),
    ("log_update", {"id": "d", "save": False}),
    ("log_update", {"id": "d", "path": "a/b"}),
    ("feedback", {"id": "f", "value": "good"}),
    ("feedback", {"id": "f", "log_id": "l"}),
    ("feedback", {"id": "f", "log_id": "l", "value": None}),
    ("feedback", {"id": "f", "log_id": "l", "value": {"score": 1}}),
    ("feedback", {"id": "f", "log_id": "l", "value": 1, "comment": "x" * 65537}),
    ("feedback", {"id": "f", "log_id": "l", "value": 1, "created_at": "soon"}),
    ("trace", {"id": "t", "action": "finish"}),
    ("trace", {"id": "t", "tags": {"k": 1}}),
    ("trace", {"id": "t", "tags": {"k": "x" * 4097}}),
    ("trace", {"id": "t", "trace_id": "t"}),
    ("trace", {"id": "t", "start_time": "2026-01-01T00:00:00"}),
    ("span", {"id": "s"}),
    ("span", {"id": "s", "trace_id": ""}),
    ("span", {"id": "s", "trace_id": "t", "output": "not a span's"}),
    ("generation", {"id": "g", "trace_id": "t"}),
    ("generation", {"id": "g", "trace_id": "t", "provider": "openai"}),
    ("generation", {"id": "g", "trace_id": "t", "action": "create", "model": "m"}),
    ("generation", {"id": "g", "trace_id": "t", "action": "update", "messages": None}),
    ("generation", {"id": "g", "trace_id": "t", "action": "update", "cost": {"input": 1}}),
    ("generation", {"id": "g", "trace_id": "t", "action": "update", "cost": {"total": -1}}),
    (
        "generation",
        {"id": "g", "trace_id": "t", "action": "end", "end_time": "2026-13-01T00:00:00Z"},
    ),
    ("generation_result", {"generation_id": "g", "trace_id": "t"}),
    ("generation_result", {"generation_id": "g", "trace_id": "t", "result": {"id": "c"}}),
    (
        "generation_result",
        {"generation_id": "g", "trace_id": "t", "result": {"id": "c", "created": -1}},
    ),
    (
        "generation_result",
        {
            "generation_id": "g",
            "trace_id": "t",
            "result": {"id": "c", "created": 1, "usage": {"prompt_tokens": -1}},
        },
    ),
    (
        "generation_result",
        {
            "generation_id": "g",
            "trace_id": "t",
            "result": {"id": "c", "created": 1, "choices": [{}]},
        },
    ),
    ("generation_error", {"generation_id": "g", "trace_id": "t", "error": {}}),
    (
        "generation_error",
        {"generation_id": "g", "trace_id": "t", "error": {"message": "m", "x": 1}},
    ),
    (
        "log_update",
        {
            "reference_id": "r",
            "end_time": "2026-01-01T00:00:00+00:00",
            "start_time": "2026-01-01T00:00:01+00:00",
        },
    ),
]
# The documented cases where the mirror is stricter (the contract accepts, the mirror asks it).
STRICTER: list[tuple[str, dict[str, Any]]] = [
    ("log", {"id": "x" * 513}),
    ("log", {"id": "d", "path": ".hidden/a"}),
    ("log", {"id": "d", "start_time": "2026-01-01 00:00:00Z"}),
    ("log", {"id": "d", "prompt": {"model": "m", "max_tokens": "5"}}),
    ("log", {"id": "d", "metadata": {"note": "a literal \\u0000"}}),
]


def contract_identity(etype: str, data: bytes) -> str | None:
    """The contract's verdict: the entity identity of an accepted body, None if rejected."""
    try:
        model = MODELS[etype].model_validate_json(data)
    except ValidationError:
        return None
    return _IDENTITY[etype](model)


@pytest.mark.parametrize(("etype", "body"), VALID)
def test_the_mirror_accepts_valid_bodies_with_the_contracts_identity(
    etype: str, body: dict[str, Any]
) -> None:
    data = orjson.dumps(body)
    expected = contract_identity(etype, data)
    assert expected is not None
    assert fast_identity(etype, data) == expected


@pytest.mark.parametrize(("etype", "body"), INVALID)
def test_both_reject_invalid_bodies(etype: str, body: dict[str, Any]) -> None:
    data = orjson.dumps(body)
    assert contract_identity(etype, data) is None
    assert fast_identity(etype, data) is None


@pytest.mark.parametrize(("etype", "body"), STRICTER)
def test_the_documented_stricter_cases_go_to_the_contract(etype: str, body: dict[str, Any]) -> None:
    data = orjson.dumps(body)
    assert contract_identity(etype, data) is not None
    assert fast_identity(etype, data) is None
    # ...and the encoder still accepts them, through the contract.
    key, _ = EventEncoder("p", max_event_bytes=1 << 20).finish(etype, 0.0, data)
    assert key.startswith(b"p/")


def test_a_rejection_names_fields_exactly_as_the_contract_does() -> None:
    fast = EventEncoder("p", max_event_bytes=1 << 20)
    slow = EventEncoder("p", max_event_bytes=1 << 20, fast=False)
    data = orjson.dumps({"id": "d", "prompt_tokens": -1, "session_id": ""})
    errors = []
    for encoder in (fast, slow):
        with pytest.raises(ContractError) as caught:
            encoder.finish("log", 0.0, data)
        errors.append(caught.value.errors)
    assert errors[0] == errors[1]
    assert {e.field for e in errors[0]} == {"body.prompt_tokens", "body.session_id"}


def test_the_mirror_has_the_contracts_fields() -> None:
    for etype, model in MODELS.items():
        assert set(MIRRORS[etype].__struct_fields__) == set(model.model_fields), etype
    assert FAST_TYPES == set(_BODY_MODELS) - {"node", "delete"} == set(MIRRORS)


def schema_digest(model: type[BaseModel]) -> str:
    text = json.dumps(model.model_json_schema(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("etype", sorted(MODELS))
def test_the_contract_is_the_one_the_mirror_was_reviewed_against(etype: str) -> None:
    """Fails when the contract's model changes (a field, a bound, a pattern): review
    ``producers/contract/mirror.py`` against it, then pin the new digest here."""
    assert schema_digest(MODELS[etype]) == SCHEMA_SHA256[etype]


# -- generated bodies ---------------------------------------------------------------------

DATETIMES = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00+00:00",
    "2026-01-01T00:00:00",
    "2026-01-01 00:00:00Z",
    "2026-01-01t00:00:00z",
    "2026-13-01T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2026-01-01T00:00:60Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00-23:59",
    "2026-01-01T00:00:00+05:60",
    "2026-01-01T00:00:00-03:99",
    "2026-01-01T00:00:00+0000",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999-23:59",
    "20260101T000000Z",
    "1700000000",
]
_TEXT = st.sampled_from(
    [
        *DATETIMES,
        *["", "a", "x" * 512, "x" * 513, "x" * 1025, "é" * 600, "\\u0000"],
        *["a\x00", "a\n", "\n", "/a", "a/", "a//b", "a/./b", "a/../b", ".a", "a/.b", ".."],
        *["user", "assistant", "function", "auto", "none", "chat", "jinja", "5", "1e3"],
    ]
) | st.text(max_size=20)
_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.sampled_from([0, -1, 10**12, 10**12 + 1, 10**9, -2, 2, 1, 0.0, -0.0, 1e300, 1e301])
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _edge_strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """Strings at the schema's bounds, plus the awkward ones (_TEXT)."""
    edges: list[str] = []
    if "maxLength" in schema:
        n = schema["maxLength"]
        edges += ["x" * n, "x" * (n + 1), "é" * n, "\U0001f600" * n]
    if "enum" in schema:
        edges += list(schema["enum"]) + [v.upper() for v in schema["enum"]]
    return st.sampled_from(edges) | _TEXT if edges else _TEXT


def _edge_numbers(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    edges = [v for b in (low, high) if b is not None for v in (b, b - 1, b + 1, b + 0.5)]
    if integer:
        inside = st.integers(
            min_value=-(2**63) if low is None else int(low),
            max_value=2**64 - 1 if high is None else int(high),
        )
    else:
        inside = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    return inside | st.sampled_from(edges or [0]) | _SCALAR


def from_schema(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """Values near what ``schema`` (a pydantic JSON Schema) allows: mostly of its shape, with
    values at and just past its bounds, and now and then any JSON value at all."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs, depth) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.sampled_from(DATETIMES) | st.datetimes(timezones=st.timezones()).map(
                lambda d: d.isoformat()
            )
        shaped = _edge_strings(schema)
    elif kind in ("integer", "number"):
        shaped = _edge_numbers(schema, kind == "integer")
    elif kind == "boolean":
        shaped = st.booleans()
    elif kind == "null":
        shaped = st.none()
    elif kind == "array":
        items = from_schema(schema.get("items", {}), defs, depth + 1) if depth < 3 else _JSON
        shaped = st.lists(items, max_size=3)
    elif kind == "object" and "properties" in schema and depth < 3:
        props = schema["properties"]
        required = set(schema.get("required", ()))
        shaped = st.fixed_dictionaries(
            {k: from_schema(v, defs, depth + 1) for k, v in props.items() if k in required},
            optional={
                k: from_schema(v, defs, depth + 1) for k, v in props.items() if k not in required
            },
        )
        if schema.get("additionalProperties", False) is not False:
            shaped = st.tuples(shaped, st.dictionaries(_TEXT, _JSON, max_size=2)).map(
                lambda pair: {**pair[1], **pair[0]}
            )
        shaped = shaped | shaped.map(lambda d: {**d, "not_a_field": 1})
    else:
        return _JSON
    return st.one_of(shaped, shaped, shaped, _JSON)  # mostly shaped


def _bodies(etype: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = MODELS[etype].model_json_schema()
    defs = schema.get("$defs", {})
    props = schema["properties"]
    base = BASES[etype]
    changes = st.lists(
        st.sampled_from(sorted(props)).flatmap(
            lambda f: st.tuples(st.just(f), from_schema(props[f], defs))
        ),
        min_size=1,
        max_size=6,
    )
    return changes.map(lambda pairs: {**base, **dict(pairs)})


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(etype=st.sampled_from(sorted(MODELS)), data=st.data())
def test_generated_bodies_the_mirror_accepts_the_contract_accepts(
    etype: str, data: st.DataObject
) -> None:
    body = data.draw(_bodies(etype))
    raw = orjson.dumps(body)
    fast = fast_identity(etype, raw)
    if fast is not None:
        assert contract_identity(etype, raw) == fast
        event = EventEncoder("p", max_event_bytes=1 << 22).finish(etype, 0.0, raw)[1]
        parse_event(event, max_bytes=1 << 22)  # the consumer takes the whole event too


# -- whole records (stage 1's fast path) ------------------------------------------------

_CONTRACT_RECORD = TypeAdapter(list[Event])
ENVELOPE = {"event_id": "evt_1", "ts": "2026-01-01T00:00:00.25+00:00", "project": "acme"}


def _event(etype: str, body: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {**ENVELOPE, "type": etype, "body": body, **envelope}


def contract_record(value: bytes) -> list[tuple[str, str, datetime]] | None:
    """The contract's verdict on a whole record: type, identity and time of each event."""
    try:
        events = _CONTRACT_RECORD.validate_json(value)
    except ValidationError:
        return None
    return [(e.type, entity_identity(e), e.ts) for e in events]


def test_the_synthetic_stream_takes_the_fast_path_with_the_contracts_verdict() -> None:
    """Every record of the benchmarks' mix: where the mirror accepts a record, the contract
    does too and finds the same identities and times; the mirror accepts most of them."""
    records = [value for _, value in pack_events(generate_events(6000, seed=3), 4, seed=3)]
    accepted = 0
    for value in records:
        fast = fast_record(value)
        if fast is None:
            continue
        accepted += 1
        assert [tuple(found) for found in fast] == contract_record(value)
    # the mix holds bad events on purpose (dead letters): those records go to the contract
    assert accepted >= 0.9 * len(records)


@pytest.mark.parametrize(("etype", "body"), VALID)
def test_a_record_of_valid_events_is_accepted_whole(etype: str, body: dict[str, Any]) -> None:
    value = orjson.dumps([_event(etype, body), _event("trace", {"id": "t"}, event_id="evt_2")])
    assert fast_record(value) is not None
    assert [tuple(found) for found in fast_record(value) or []] == contract_record(value)


@pytest.mark.parametrize(
    "event",
    [
        _event("log", {"id": "d"}, project="acme\n"),  # Python's `$` would take it
        _event("log", {"id": "d"}, project=""),
        _event("log", {"id": "d"}, project="a/b"),
        _event("log", {"id": "d"}, project="x" * 129),
        _event("log", {"id": "d"}, ts="2026-01-01T00:00:00"),
        _event("log", {"id": "d"}, ts="2026-02-30T00:00:00Z"),
        _event("log", {"id": "d"}, ts="2026-01-01T00:00:00+05:60"),
        _event("log", {"id": "d"}, event_id=""),
        _event("log", {"id": "d"}, extra=1),
        _event("log", {"id": "d"}, type="metric"),
        {k: v for k, v in _event("log", {"id": "d"}).items() if k != "type"},
        {k: v for k, v in _event("log", {"id": "d"}).items() if k != "ts"},
        _event("log", {}),
    ],
)
def test_a_record_with_a_bad_envelope_is_refused_by_both(event: dict[str, Any]) -> None:
    value = orjson.dumps([_event("trace", {"id": "t"}, event_id="evt_0"), event])
    assert contract_record(value) is None
    assert fast_record(value) is None


@pytest.mark.parametrize(
    "event",
    [
        _event("node", {"id": "n", "kind": "event", "trace_id": "t"}),  # not mirrored
        _event("delete", {"kind": "log", "id": "d"}),  # not mirrored
        _event("log", {"id": "d", "metadata": {"note": "a\x00b"}}),  # NUL: the contract's
        _event("log", {"id": "d"}, ts="2026-01-01 00:00:00+00:00"),  # stricter form
    ],
)
def test_what_the_mirror_does_not_judge_goes_to_the_contract(event: dict[str, Any]) -> None:
    value = orjson.dumps([event])
    assert fast_record(value) is None
    assert contract_record(value) is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    etypes=st.lists(st.sampled_from(sorted(MODELS)), min_size=1, max_size=4),
    data=st.data(),
    ts=st.sampled_from(DATETIMES) | st.datetimes(timezones=st.timezones()).map(str),
    project=st.sampled_from(["acme", "a.b:c@d-e_f", "-x", "A", "a b", "é"]),
)
def test_generated_records_the_mirror_accepts_the_contract_accepts(
    etypes: list[str], data: st.DataObject, ts: str, project: str
) -> None:
    events = [
        _event(etype, data.draw(_bodies(etype)), event_id=f"e{i}", ts=ts, project=project)
        for i, etype in enumerate(etypes)
    ]
    value = orjson.dumps(events)
    fast = fast_record(value)
    if fast is not None:
        assert [tuple(found) for found in fast] == contract_record(value)


def test_a_repeated_key_goes_to_the_contract() -> None:
    """orjson and the contract keep the last of a repeated key; the mirror refuses the
    record, so it never judges a value other than the one that is merged."""
    body = b'{"id":"d","prompt_tokens":5,"prompt_tokens":-1}'
    value = b'[{"event_id":"e","type":"log","ts":"2026-01-01T00:00:00Z","project":"p","body":%b}]'
    assert fast_record(value % body) is None
    assert contract_record(value % body) is None  # the last one, -1, is refused
    fixed = body.replace(b"5,", b"-1,").replace(b":-1}", b":5}")
    assert fast_record(value % fixed) is None
    assert contract_record(value % fixed) is not None
