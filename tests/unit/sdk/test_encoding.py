"""The SDK's wire building agrees with the contract: bytes, routing keys, partitions."""

from __future__ import annotations

import gc
import random
import time
import uuid
import warnings
from decimal import Decimal
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from producers.contract import (
    ContractError,
    parse_event,
    partition_for,
    routing_key,
    unpack_record,
)
from producers.sdk.encoding import EncodedBatch, EventEncoder, item_type, new_id
from producers.sdk.transport import build_records, group_by_partition, pack_groups

ENCODER = EventEncoder("proj-1", max_event_bytes=64 * 1024)
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}
BODIES: dict[str, dict[str, Any]] = {
    "log": {"id": "data_1", "reference_id": "ref-1", "path": "a/b", "prompt_tokens": 3},
    "log_update": {"reference_id": "ref-1", "output": "done", "provider_latency": 0.5},
    "feedback": {"id": "fbk_1", "log_id": "data_1", "value": True},
    "trace": {"id": "trace-1", "name": "t", "tags": {"env": "prod"}},
    "span": {"id": "span-1", "trace_id": "trace-1", "name": "s"},
    "generation": {
        "id": "gen-1",
        "trace_id": "trace-1",
        "parent_id": "span-1",
        "provider": "openai",
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "q"}],
    },
    "generation_result": {"generation_id": "gen-1", "trace_id": "trace-1", "result": COMPLETION},
    "generation_error": {
        "generation_id": "gen-1",
        "trace_id": "trace-1",
        "error": {"message": "rate limited", "code": "429"},
    },
}


@pytest.mark.parametrize("etype", sorted(BODIES))
def test_encoded_event_parses_and_routes_as_the_contract_says(etype: str) -> None:
    body = dict(BODIES[etype])
    key, data = ENCODER.encode(etype, time.time(), body, ())
    event = parse_event(data)
    assert event.type == etype and event.project == "proj-1"
    assert event.event_id.startswith("evt_")
    assert event.ts.tzinfo is not None
    assert key == routing_key(event)
    assert set(orjson.loads(data)["body"]) == set(BODIES[etype])  # only the fields carried


def test_stamped_fields_carry_the_call_time() -> None:
    ts = 1_700_000_000.25
    _, data = ENCODER.encode("trace", ts, {"id": "t1"}, ("start_time",))
    event = parse_event(data)
    assert event.ts.timestamp() == ts
    assert event.body.start_time == event.ts  # type: ignore[union-attr]


def test_log_update_without_reference_or_id_routes_nowhere_and_is_rejected() -> None:
    with pytest.raises(ContractError) as info:
        ENCODER.encode("log_update", time.time(), {"output": "x"}, ())
    assert info.value.fields == ("body.reference_id",)


def test_invalid_field_is_named_and_the_value_is_not_in_the_error() -> None:
    secret = "sk-live-very-secret"
    with pytest.raises(ValueError) as info:
        ENCODER.encode("log", time.time(), {"id": "data_1", "prompt_tokens": secret}, ())
    assert isinstance(info.value, ContractError)
    assert info.value.fields == ("body.prompt_tokens",)
    assert secret not in str(info.value)


def test_unknown_field_is_named() -> None:
    with pytest.raises(ContractError) as info:
        ENCODER.encode("log", time.time(), {"id": "data_1", "promt_tokens": 1}, ())
    assert info.value.fields == ("body.promt_tokens",)


def test_unserializable_value_names_the_field_and_type_only() -> None:
    with pytest.raises(ContractError) as info:
        ENCODER.encode("log", time.time(), {"id": "data_1", "metadata": {"x": Decimal("1.5")}}, ())
    assert info.value.fields == ("body.metadata",)
    assert "1.5" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "d", "prompt_cost": float("nan")}, "body.prompt_cost"),
        ({"id": "d", "duration": float("inf")}, "body.duration"),
        ({"id": "d", "metadata": {"a": [1.0, float("-inf")]}}, "body.metadata.a[1]"),
    ],
)
def test_nan_and_infinities_are_refused_not_sent_as_null(body: dict[str, Any], field: str) -> None:
    """orjson writes them as null, which would change the caller's value silently."""
    with pytest.raises(ContractError) as info:
        ENCODER.encode("log", time.time(), body, ())
    assert info.value.fields == (field,)


def test_nulls_and_finite_numbers_still_pass() -> None:
    body = {"id": "d", "output": None, "prompt_cost": 0.5, "metadata": {"x": None, "y": [2.5]}}
    _, data = ENCODER.encode("log", time.time(), body, ())
    assert orjson.loads(data)["body"] == body


def test_too_large_event_is_rejected_as_event() -> None:
    small = EventEncoder("p", max_event_bytes=2048)
    with pytest.raises(ContractError) as info:
        small.encode("log", time.time(), {"id": "data_1", "output": "x" * 4096}, ())
    assert info.value.fields == ("event",)


def test_naive_datetime_is_rejected() -> None:
    from datetime import datetime

    with pytest.raises(ContractError) as info:
        ENCODER.encode("log", time.time(), {"id": "d", "start_time": datetime(2026, 1, 1)}, ())
    assert info.value.fields == ("body.start_time",)


class FakeOpenAIMessage(BaseModel):
    role: str
    content: str | None = None
    refusal: str | None = None


class FakeOpenAIChoice(BaseModel):
    index: int
    message: FakeOpenAIMessage
    finish_reason: str


class FakeOpenAICompletion(BaseModel):
    """The shape of ``openai.types.chat.ChatCompletion`` (the package is not installed)."""

    id: str
    object: str
    created: int
    model: str
    choices: list[FakeOpenAIChoice]
    service_tier: str | None = None


def test_objects_with_model_dump_are_accepted() -> None:
    completion = FakeOpenAICompletion.model_validate(
        {**{k: v for k, v in COMPLETION.items() if k != "usage"}, "service_tier": "default"}
    )
    body = {"generation_id": "g", "trace_id": "t", "result": completion}
    _, data = ENCODER.encode("generation_result", time.time(), body, ("end_time",))
    event = parse_event(data)
    assert event.body.result.choices[0].message.content == "hi"  # type: ignore[union-attr]


def test_new_id_is_a_prefixed_uuid4_and_unique() -> None:
    ids = {new_id("data_") for _ in range(10_000)}
    assert len(ids) == 10_000
    sample = next(iter(ids))
    assert sample.startswith("data_") and len(sample) == 5 + 32
    assert uuid.UUID(hex=sample[5:]).version == 4


def test_new_id_does_not_follow_the_global_random_seed() -> None:
    random.seed(7)
    first = new_id("")
    random.seed(7)
    assert new_id("") != first


def test_records_hold_only_events_of_their_partition_and_respect_bounds() -> None:
    events = [
        ENCODER.encode("log", time.time(), {"id": f"data_{i}", "output": "x" * 50}, ())
        for i in range(500)
    ]
    records = build_records(events, 5, max_bytes=8 * 1024, max_events=40)
    assert sum(len(r.events) for r in records) == 500
    for record in records:
        assert len(record.events) <= 40 and len(record.value) <= 8 * 1024
        packed = unpack_record(record.value)
        assert len(packed) == len(record.events)
        for raw in packed:
            assert partition_for(routing_key(parse_event(raw)), 5) == record.partition
    # order within a partition is kept
    order = [
        orjson.loads(d)["body"]["id"] for r in records if r.partition == 0 for _, d in r.events
    ]
    assert order == sorted(order, key=lambda i: int(i.split("_")[1]))


@pytest.mark.parametrize("slice_size", [1, 7, 128, 1000])
def test_grouping_in_slices_packs_the_same_records_as_the_whole_batch(slice_size: int) -> None:
    # The Kafka transport groups a batch by partition a slice at a time (a pass of its
    # event loop between slices) and packs once: records hold the batch's events of their
    # partition, exactly as build_records over the whole batch packs them.
    events = [
        ENCODER.encode("log", time.time(), {"id": f"data_{i}", "output": "y" * (i % 90)}, ())
        for i in range(700)
    ]
    groups: dict[int, list[tuple[bytes, bytes]]] = {}
    for start in range(0, len(events), slice_size):
        group_by_partition(events[start : start + slice_size], 12, groups)
    sliced = pack_groups(groups, max_bytes=8 * 1024, max_events=40)
    whole = build_records(events, 12, max_bytes=8 * 1024, max_events=40)
    assert sliced == whole
    # a record is cut only by its bounds, never by a slice: at most one record per partition
    # is not full, and it is the partition's last
    for partition in {r.partition for r in whole}:
        own = [r for r in whole if r.partition == partition]
        for record in own[:-1]:
            assert len(record.events) == 40 or len(record.value) + 500 > 8 * 1024


def test_a_serialized_body_is_orjsons_output() -> None:
    # The queued copy (of orjson's buffer, for the allocator's sake) holds the same bytes.
    body = {"id": "data_1", "output": "z" * 300, "messages": [{"role": "user", "content": "q"}]}
    data = ENCODER.serialize("log", time.time(), dict(body), ())
    assert data == orjson.dumps(body) and type(data) is bytes


def test_unpacked_records_hold_one_event_each_as_its_bytes() -> None:
    events = [(f"k{i}".encode(), orjson.dumps({"reason": f"r{i}"})) for i in range(20)]
    records = build_records(events, 3, max_bytes=8 * 1024, max_events=40, packed=False)
    assert [r.value for r in records] == [data for _, data in events]
    assert all(r.events == ((key, r.value),) for r, (key, _) in zip(records, events, strict=True))
    assert all(
        r.partition == partition_for(key, 3) for r, (key, _) in zip(records, events, strict=True)
    )


def test_a_model_the_serializer_did_not_expect_is_dumped_without_a_warning_quoting_it() -> None:
    # The openai package builds parsed completions without validating them; pydantic then
    # warns "PydanticSerializationUnexpectedValue(... input_value=<the LLM's answer>)".
    class Answer(BaseModel):
        answer: str

    class Message(BaseModel):
        role: str
        parsed: int | None = None  # narrower than what it holds, like ParsedChatCompletion

    message = Message.model_construct(role="assistant", parsed=Answer(answer="SECRET ANSWER"))
    encoder = EventEncoder("p", max_event_bytes=1 << 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        body = encoder.serialize("log", 0.0, {"output_message": message}, ())
    assert b"SECRET ANSWER" in body  # the value travels in the event...
    assert not [w for w in caught if "SECRET" in str(w.message)]  # ...never in a warning


def test_a_queued_item_is_one_untracked_bytes_object_that_finishes_as_encode_does() -> None:
    ts = 1_700_000_000.123456
    body = {"output": "hi", "messages": [{"role": "user", "content": "x"}], "id": "log_1"}
    item = ENCODER.item("log", ts, dict(body), ())
    assert type(item) is bytes and not gc.is_tracked(item)
    key, data = ENCODER.finish_item(item)
    expected_key, expected = ENCODER.encode("log", ts, dict(body), ())
    assert key == expected_key
    got, want = orjson.loads(data), orjson.loads(expected)
    assert got.pop("event_id") != want.pop("event_id")  # fresh per event
    assert got == want and got["ts"] == "2023-11-14T22:13:20.123456+00:00"
    assert item_type(item) == "log"


def test_an_item_strict_mode_encoded_finishes_as_the_very_same_bytes() -> None:
    event = ENCODER.encode("trace", time.time(), {"id": "trace_1", "name": "t"}, ())
    item = ENCODER.pre_encoded_item(event)
    assert ENCODER.finish_item(item) == event
    assert item_type(item) == "event"


def test_an_item_the_contract_refuses_names_the_field_when_finished() -> None:
    item = ENCODER.item("log", time.time(), {"prompt_tokens": -1}, ())
    with pytest.raises(ContractError) as refused:
        ENCODER.finish_item(item)
    assert "body.prompt_tokens" in refused.value.fields


def test_an_encoded_batch_is_a_sequence_of_pairs_held_as_two_lists() -> None:
    pairs = [(f"p/k{i}".encode(), f'{{"n":{i}}}'.encode()) for i in range(5)]
    batch = EncodedBatch.of(pairs)
    assert EncodedBatch.of(batch) is batch
    assert len(batch) == 5 and list(batch) == pairs and batch == pairs
    assert batch[1] == pairs[1] and batch[-1] == pairs[-1]
    assert isinstance(batch[1:3], EncodedBatch) and list(batch[1:3]) == pairs[1:3]
    assert batch.nbytes() == sum(len(v) for _, v in pairs)
    assert batch.keys == [k for k, _ in pairs] and batch.values == [v for _, v in pairs]
    batch.extend(EncodedBatch.of(pairs[:2]))
    batch.append(b"p/x", b"{}")
    assert list(batch) == [*pairs, *pairs[:2], (b"p/x", b"{}")]
    with pytest.raises(ValueError, match="one key per value"):
        EncodedBatch([b"p/a"], [])


def test_an_item_of_an_unknown_type_is_refused_naming_the_type() -> None:
    with pytest.raises(ContractError) as refused:
        ENCODER.item("log_v2", time.time(), {"output": "x"}, ())
    assert refused.value.fields == ("type",)
