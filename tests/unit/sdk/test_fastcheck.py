"""The SDK's msgspec mirror never accepts what the contract rejects (the drift guard).

``producers.sdk.fastcheck`` may be stricter than the contract (a body it rejects is judged by
the contract), never looser. Three guards: a corpus of valid and invalid bodies with the
verdict of both, hypothesis-generated bodies (every field of the contract's JSON Schema set
to edge values), and the fields and JSON Schema of the mirrored models pinned, so that a
change to the contract fails here until the mirror is reviewed with it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from producers.contract import ContractError, LogBody, LogUpdateBody, parse_event
from producers.sdk import fastcheck
from producers.sdk.encoding import _IDENTITY, EventEncoder
from producers.sdk.fastcheck import FAST_TYPES, fast_identity

MODELS: dict[str, type[BaseModel]] = {"log": LogBody, "log_update": LogUpdateBody}
MIRRORS: dict[str, type[msgspec.Struct]] = {
    "log": fastcheck._LogBody,
    "log_update": fastcheck._LogUpdateBody,
}
# Reviewed against the mirror; a contract change makes this fail (see the module docstring).
SCHEMA_SHA256 = {
    "log": "0387d7482f6a7640bedd697abed69dd49d38deb841340aaedc6adac2f24f4555",
    "log_update": "b914088aa195d721e1444c3bb263c363b2c52bddf624765802dd287a89530b3f",
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
    assert set(MODELS) == FAST_TYPES


def schema_digest(model: type[BaseModel]) -> str:
    text = json.dumps(model.model_json_schema(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("etype", sorted(MODELS))
def test_the_contract_is_the_one_the_mirror_was_reviewed_against(etype: str) -> None:
    """Fails when the contract's model changes (a field, a bound, a pattern): review
    ``producers/sdk/fastcheck.py`` against it, then pin the new digest here."""
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
    base = {"id": "d"} if etype == "log" else {"reference_id": "r"}
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
