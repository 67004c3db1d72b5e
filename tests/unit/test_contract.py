"""The wire contract: golden fixtures from the seed pages, seed-field coverage, and invalid
inputs, each rejected with an error that names the field."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from producers.contract import (
    EVENT_TYPES,
    ContractError,
    GenerationResultEvent,
    LogBody,
    LogEvent,
    LogResponse,
    LogUpdateBody,
    LogUpdateEvent,
    encode_event,
    event_json_schema,
    pack_record,
    parse_event,
    partition_for,
    routing_key,
    unpack_record,
    validate_event,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
EVENT_FIXTURES = [
    "humanloop_log_every_field.json",
    "humanloop_log_update.json",
    "maxim_generation.json",
    "maxim_generation_result.json",
]

# Field names as the seed pages (../shared/seeds/) give them.
SEED_LOG_REQUEST = """evaluation_id path id output_message prompt_tokens output_tokens prompt_cost
output_cost finish_reason messages tool_choice prompt start_time end_time output created_at error
provider_latency stdout provider_request provider_response inputs source metadata
source_datapoint_id trace_id trace_parent_log_id batches user environment save version_id""".split()
SEED_UPDATE_REQUEST = "reference_id output error provider_latency".split()
SEED_GET_RESPONSE = """id config evaluation_results observability_status updated_at project
project_id session_id session_reference_id parent_id parent_reference_id inputs source metadata
save source_datapoint_id reference_id messages output judgment config_id environment feedback
created_at error stdout duration output_message prompt_tokens output_tokens prompt_cost
output_cost provider_request provider_response user provider_latency tokens raw_output
finish_reason tools tool_choice batch_ids""".split()
# In the Humanloop request `id` is the Prompt's id; on the wire that is `prompt_id`.
REQUEST_TO_WIRE = {"id": "prompt_id"}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", EVENT_FIXTURES)
def test_golden_fixture_round_trips_with_exactly_the_fields_it_carries(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    event = parse_event(raw)
    wire = encode_event(event)
    assert parse_event(wire) == event
    assert set(orjson.loads(wire)["body"]) == set(json.loads(raw)["body"])


def test_every_seed_log_request_field_is_carried_by_the_log_fixture() -> None:
    body = load("humanloop_log_every_field.json")["body"]
    for seed_name in SEED_LOG_REQUEST:
        name = REQUEST_TO_WIRE.get(seed_name, seed_name)
        assert name in LogBody.model_fields, seed_name
        assert name in body, f"fixture lacks {name}"
    event = parse_event(json.dumps(load("humanloop_log_every_field.json")))
    assert isinstance(event, LogEvent)
    assert event.body.prompt is not None and event.body.prompt.model == "gpt-4o"
    assert event.body.tool_choice is not None and event.body.tool_choice != "auto"
    assert event.body.prompt_tokens == 100 and event.body.output_cost == 0.0005


def test_every_seed_update_field_is_an_update_field() -> None:
    for name in SEED_UPDATE_REQUEST:
        assert name in LogUpdateBody.model_fields, name


def test_every_seed_get_response_field_is_in_the_response_model() -> None:
    response = load("humanloop_get_log_response.json")
    for name in SEED_GET_RESPONSE:
        assert name in LogResponse.model_fields, name
        assert name in response, f"fixture lacks {name}"
    parsed = LogResponse.model_validate(response)
    assert parsed.observability_status == "completed" and parsed.tokens == 150


def test_update_carries_only_its_fields_and_explicit_nulls() -> None:
    event = parse_event((FIXTURES / "humanloop_log_update.json").read_bytes())
    assert isinstance(event, LogUpdateEvent)
    assert event.body.changes() == {
        "output": "Please share your customer id so I can look into it.",
        "error": None,
        "provider_latency": 1.2,
    }


def test_maxim_result_exposes_cached_and_reasoning_tokens() -> None:
    event = parse_event((FIXTURES / "maxim_generation_result.json").read_bytes())
    assert isinstance(event, GenerationResultEvent)
    usage = event.body.result.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 50, 150)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (40, 10)


def test_python_objects_validate_like_json() -> None:
    data = load("maxim_generation.json")
    assert validate_event(data) == parse_event(json.dumps(data))


def test_json_schema_covers_every_event_type() -> None:
    schema = event_json_schema()
    assert set(schema["discriminator"]["mapping"]) == set(EVENT_TYPES)


def test_size_limit_is_configurable() -> None:
    raw = (FIXTURES / "maxim_generation.json").read_bytes()
    parse_event(raw, max_bytes=len(raw))
    with pytest.raises(ContractError) as info:
        parse_event(raw, max_bytes=len(raw) - 1)
    assert info.value.fields == ("event",)
    assert "over the limit" in str(info.value)


# ---------------------------------------------------------------------------------------
# Invalid inputs. Each case edits a valid fixture and names the field the error must name.

_DELETE = object()


def _edit(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return doc


LOG = "humanloop_log_every_field.json"
UPDATE = "humanloop_log_update.json"
GEN = "maxim_generation.json"
RESULT = "maxim_generation_result.json"

INVALID: list[tuple[str, str, str, Any, str]] = [
    # (case id, fixture, path edited, new value, field the error must name)
    ("unknown-type", LOG, "type", "log_v2", "type"),
    ("missing-type", LOG, "type", _DELETE, "type"),
    ("missing-event-id", LOG, "event_id", _DELETE, "event_id"),
    ("event-id-with-nul", LOG, "event_id", "evt\u0000x", "event_id"),
    ("event-id-too-long", LOG, "event_id", "e" * 1025, "event_id"),
    ("event-id-over-2048-bytes", LOG, "event_id", "\U0001f600" * 513, "event_id"),
    ("event-id-empty", LOG, "event_id", "", "event_id"),
    ("naive-ts", LOG, "ts", "2026-11-22T10:15:30", "ts"),
    ("ts-not-a-date", LOG, "ts", "yesterday", "ts"),
    ("project-with-space", LOG, "project", "my project", "project"),
    ("log-id-with-nul", LOG, "body.id", "data\u00001", "body.id"),
    ("missing-log-id", LOG, "body.id", _DELETE, "body.id"),
    ("reference-id-too-long", LOG, "body.reference_id", "r" * 1025, "body.reference_id"),
    ("project-with-slash", LOG, "project", "a/b", "project"),
    ("negative-prompt-tokens", LOG, "body.prompt_tokens", -1, "body.prompt_tokens"),
    ("fractional-tokens", LOG, "body.output_tokens", 1.5, "body.output_tokens"),
    ("tokens-as-string", LOG, "body.prompt_tokens", "100", "body.prompt_tokens"),
    ("tokens-as-bool", LOG, "body.cached_tokens", True, "body.cached_tokens"),
    ("negative-cost", LOG, "body.prompt_cost", -0.01, "body.prompt_cost"),
    ("cost-as-string", LOG, "body.output_cost", "0.5", "body.output_cost"),
    ("naive-created-at", LOG, "body.created_at", "2026-11-22 10:00:00", "body.created_at"),
    ("end-before-start", LOG, "body.end_time", "2026-11-22T10:15:28Z", "body.end_time"),
    ("negative-latency", LOG, "body.provider_latency", -2, "body.provider_latency"),
    ("unknown-body-field", LOG, "body.colour", "blue", "body.colour"),
    ("unknown-envelope-field", LOG, "priority", 1, "priority"),
    ("bad-message-role", LOG, "body.messages.1.role", "robot", "body.messages[1].role"),
    ("message-content-number", LOG, "body.messages.0.content", 5, "body.messages[0].content"),
    ("bad-tool-choice", LOG, "body.tool_choice", "sometimes", "body.tool_choice"),
    ("metadata-not-object", LOG, "body.metadata", ["a"], "body.metadata"),
    ("save-as-string", LOG, "body.save", "false", "body.save"),
    ("path-dot-dot", LOG, "body.path", "support/../admin", "body.path"),
    ("batches-bad-id", LOG, "body.batches.0", "batch\u00001", "body.batches[0]"),
    ("prompt-without-model", LOG, "body.prompt.model", _DELETE, "body.prompt.model"),
    ("temperature-out-of-range", LOG, "body.prompt.temperature", 9, "body.prompt.temperature"),
    (
        "two-session-keys",
        LOG,
        "body.session_id",
        "sess_1",
        "body.session_reference_id",
    ),
    ("update-without-target", UPDATE, "body.reference_id", _DELETE, "body.reference_id"),
    ("update-immutable-field", UPDATE, "body.trace_id", "t1", "body.trace_id"),
    ("generation-without-trace", GEN, "body.trace_id", _DELETE, "body.trace_id"),
    ("generation-without-model", GEN, "body.model", _DELETE, "body.model"),
    ("generation-params-not-object", GEN, "body.model_parameters", 0.7, "body.model_parameters"),
    (
        "usage-negative-completion",
        RESULT,
        "body.result.usage.completion_tokens",
        -50,
        "body.result.usage.completion_tokens",
    ),
    (
        "usage-cached-negative",
        RESULT,
        "body.result.usage.prompt_tokens_details.cached_tokens",
        -1,
        "body.result.usage.prompt_tokens_details.cached_tokens",
    ),
    (
        "result-without-choices-message",
        RESULT,
        "body.result.choices.0.message",
        _DELETE,
        "body.result.choices[0].message",
    ),
    ("result-created-negative", RESULT, "body.result.created", -5, "body.result.created"),
]


@pytest.mark.parametrize(
    ("fixture", "path", "value", "field"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_input_is_rejected_naming_the_field(
    fixture: str, path: str, value: Any, field: str
) -> None:
    doc = _edit(load(fixture), path, value)
    with pytest.raises(ContractError) as info:
        parse_event(json.dumps(doc))
    assert field in info.value.fields, str(info.value)
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "event"),
        (b"[1, 2]", "event"),
        (b'"log"', "event"),
        (
            b'{"event_id":"e1","type":"log","ts":"2026-11-22T10:00:00Z","project":"p",'
            b'"body":{"id":"d1","prompt_cost":NaN}}',
            "body.prompt_cost",
        ),
        (
            b'{"event_id":"e1","type":"log","ts":"2026-11-22T10:00:00Z","project":"p",'
            b'"body":{"id":"d1","output_cost":Infinity}}',
            "body.output_cost",
        ),
        (b'{"event_id":"e1","type":"log","ts":"2026-11-22T10:00:00Z","project":"p"}', "body"),
    ],
    ids=["malformed-json", "json-array", "json-string", "nan-cost", "infinite-cost", "no-body"],
)
def test_invalid_bytes_are_rejected_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_event(raw)
    assert field in info.value.fields, str(info.value)


def test_there_are_at_least_25_distinct_invalid_cases() -> None:
    assert len({case[0] for case in INVALID}) >= 25


def test_routing_key_is_the_entity_identity_within_its_project() -> None:
    log = parse_event((FIXTURES / LOG).read_bytes())
    update = parse_event((FIXTURES / UPDATE).read_bytes())
    assert routing_key(log) == routing_key(update) == b"support-bot/ticket-4711:answer"
    generation = parse_event((FIXTURES / GEN).read_bytes())
    result = parse_event((FIXTURES / RESULT).read_bytes())
    assert routing_key(generation) == routing_key(result) == b"support-bot/generation-id"


JAVA_MURMUR2 = {  # org.apache.kafka.common.utils.Utils.murmur2, from Kafka's UtilsTest
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key", list(JAVA_MURMUR2))
def test_partition_matches_kafkas_java_partitioner(key: bytes) -> None:
    for partitions in (1, 12, 1000):
        expected = (JAVA_MURMUR2[key] & 0x7FFFFFFF) % partitions
        assert partition_for(key, partitions) == expected


def test_record_packs_and_unpacks_events() -> None:
    events = [encode_event(parse_event((FIXTURES / name).read_bytes())) for name in EVENT_FIXTURES]
    unpacked = unpack_record(pack_record(events))
    assert [parse_event(raw) for raw in unpacked] == [parse_event(raw) for raw in events]
    assert len(unpack_record(events[0])) == 1


@pytest.mark.parametrize("use_c", [True, False], ids=["c-murmurhash2", "pure-python"])
def test_murmur2_equals_aiokafkas_reference_implementation(
    use_c: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiokafka.partitioner import murmur2 as reference

    import producers.contract.records as records

    if not use_c:
        monkeypatch.setattr(records, "_c_murmur2", None)
    assert records._c_murmur2 is not None or not use_c, "murmurhash2 is a dependency"
    rng = random.Random(1)
    for length in range(90):
        for _ in range(5):
            key = rng.randbytes(length)
            assert records.murmur2(key) == reference(key) & 0xFFFFFFFF
