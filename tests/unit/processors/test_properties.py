"""Property tests: any permutation, duplication and batching of the same events gives the
same entity states, and trace totals equal the brute-force sum over the final entities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.assembly import COST_UNIT, group_rollup
from processors.entities import canonical_entity, plain_event, to_change
from processors.merge import apply_change
from processors.outcome import Origin
from processors.stage1 import process_events_record
from processors.stage2 import process_entities_record
from producers.contract import PAYLOAD_FIELDS, encode_event, pack_record, validate_event

BASE = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ORIGIN = Origin("t", 0, 0)


def _event(event_id: str, etype: str, seconds: int, body: dict[str, Any]) -> dict[str, Any]:
    ts = (BASE + timedelta(seconds=seconds)).isoformat()
    return {"event_id": event_id, "type": etype, "ts": ts, "project": "p", "body": body}


@st.composite
def log_history(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Creates and updates of one log (reference_id r1), with clashing timestamps."""
    events = []
    n_creates = draw(st.integers(1, 2))
    for i in range(n_creates):
        body: dict[str, Any] = {
            "id": f"data_{i}",
            "reference_id": "r1",
            "output": draw(st.sampled_from(["a", "b", None])),
            "prompt_tokens": draw(st.integers(0, 500)),
            "metadata": draw(st.dictionaries(st.sampled_from("xyz"), st.integers(0, 3))),
            "save": draw(st.booleans()),
            "prompt": {"model": "gpt-4o", "provider": "openai"},
        }
        events.append(_event(f"c{i}", "log", draw(st.integers(0, 5)), body))
    for i in range(draw(st.integers(0, 4))):
        body = {"reference_id": "r1"}
        for name, strategy in (
            ("output", st.sampled_from(["u", "v", None])),
            ("error", st.sampled_from(["boom", None])),
            ("output_tokens", st.integers(0, 300)),
            ("metadata", st.dictionaries(st.sampled_from("xyz"), st.integers(0, 3))),
        ):
            if draw(st.booleans()):
                body[name] = draw(strategy)
        events.append(_event(f"u{i}", "log_update", draw(st.integers(0, 5)), body))
    return events


def _fold(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    state = None
    for raw in events:
        _, change = to_change(plain_event(validate_event(raw)))
        state = apply_change(state, change) or state
    return state


def _comparable(state: dict[str, Any] | None) -> Any:
    assert state is not None
    entity = canonical_entity("log:p/r1", state)
    return (set(state["seen"]), entity)


@settings(max_examples=150, deadline=None)
@given(history=log_history(), data=st.data())
def test_log_merge_is_order_and_duplicate_independent(
    history: list[dict[str, Any]], data: st.DataObject
) -> None:
    expected = _comparable(_fold(history))
    shuffled = data.draw(st.permutations(history))
    duplicates = data.draw(st.lists(st.sampled_from(history), max_size=4))
    assert _comparable(_fold([*shuffled, *duplicates])) == expected


@settings(max_examples=150, deadline=None)
@given(history=log_history())
def test_save_false_keeps_payload_out_of_state(history: list[dict[str, Any]]) -> None:
    state = _fold(history)
    assert state is not None
    if any(e["type"] == "log" and not e["body"]["save"] for e in history):
        payload = {"output", "messages", "inputs", "output_message", "provider_request"}
        assert not payload & state["mut"].keys()
        assert "output" not in orjson.dumps(state).decode().split('"mut"')[1][:2]


def _stored_payload(history: list[dict[str, Any]], chunk: int) -> dict[str, Any]:
    """Stage 1 over records of ``chunk`` events, its log outputs applied as the sink does
    (a newer version writes the payload fields it carries; save=false clears them)."""
    encoded = [encode_event(validate_event(e)) for e in history]
    table: dict[str, Any] = {}
    row: dict[str, Any] = {}
    version = 0
    for start in range(0, len(encoded), chunk):
        record = pack_record(encoded[start : start + chunk])
        out = process_events_record(record, ORIGIN, table.get, max_event_bytes=1 << 20)
        table.update(out.writes)
        for output in out.outputs:
            value = output.value
            if value["version"] <= version:
                continue
            version = value["version"]
            if value["save"] is False:
                row = {}
            else:
                row.update((name, value[name]) for name in value["carried"])
    state = table["log:p/r1"]
    if state["created"]:
        assert not any(entry[0] is not None for name, entry in state["mut"].items()
                       if name in PAYLOAD_FIELDS), "a payload value in the state"  # fmt: skip
    return row


def _latest_payload(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What the stored payload must be: nothing once a create said save=false, else per
    field the value of the latest (ts, event_id) that carried it."""
    if any(e["type"] == "log" and not e["body"]["save"] for e in history):
        return {}
    latest: dict[str, tuple[str, str, Any]] = {}
    for event in history:
        for name in PAYLOAD_FIELDS & event["body"].keys():
            stamp = (validate_event(event).ts.isoformat(), event["event_id"])
            if name not in latest or stamp > latest[name][:2]:
                latest[name] = (*stamp, event["body"][name])
    return {name: value for name, (_, _, value) in latest.items()}


@settings(max_examples=150, deadline=None)
@given(history=log_history(), data=st.data())
def test_stored_payload_is_the_latest_whatever_the_order_and_batching(
    history: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Payloads travel in outputs, not in the state: the sink still ends with each field's
    latest value (or none, for save=false), whatever order, duplication and batching."""
    shuffled = data.draw(st.permutations(history))
    duplicates = data.draw(st.lists(st.sampled_from(history), max_size=3))
    chunk = data.draw(st.integers(1, 4))
    created = any(e["type"] == "log" for e in history)
    if created:
        assert _stored_payload([*shuffled, *duplicates], chunk) == _latest_payload(history)


@st.composite
def trace_history(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A Maxim trace with spans, generations and their results (some with unknown models)."""
    events = [_event("t-create", "trace", 0, {"id": "T", "name": "chat", "session_id": "S"})]
    for g in range(draw(st.integers(1, 6))):
        model = draw(st.sampled_from(["gpt-4o", "gpt-4o-mini", "mystery-model"]))
        parent = draw(st.sampled_from([None, "S1"]))
        body = {"id": f"g{g}", "trace_id": "T", "provider": "openai", "model": model}
        if parent:
            body["parent_id"] = parent
        events.append(_event(f"g{g}-create", "generation", g, body))
        if draw(st.booleans()):
            usage = {
                "prompt_tokens": draw(st.integers(0, 2000)),
                "completion_tokens": draw(st.integers(0, 800)),
                "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, 100))},
            }
            result = {"id": f"c{g}", "created": 1, "choices": [], "usage": usage}
            rbody = {"generation_id": f"g{g}", "trace_id": "T", "result": result}
            events.append(_event(f"g{g}-result", "generation_result", g + 1, rbody))
    span = {"id": "S1", "trace_id": "T", "name": "retrieve"}
    events.append(_event("s1-create", "span", 0, span))
    events.append(_event("t-end", "trace", 30, {"id": "T", "action": "end"}))
    return events


def _run_pipeline(events: list[dict[str, Any]], chunk: int, reorder: Any = None) -> dict[str, Any]:
    """Stage 1 over records of ``chunk`` events, then stage 2 over its outputs (reordered by
    ``reorder``, as redelivery may); the final rollup of trace T and the stage 1 states."""
    encoded = [encode_event(validate_event(e)) for e in events]
    table1: dict[str, Any] = {}
    outputs: list[bytes] = []
    for start in range(0, len(encoded), chunk):
        record = pack_record(encoded[start : start + chunk])
        out1 = process_events_record(record, ORIGIN, table1.get, max_event_bytes=1 << 20)
        table1.update(out1.writes)
        outputs.extend(orjson.dumps(o.value) for o in out1.outputs)
    if reorder is not None:
        outputs = reorder(outputs)
    table2: dict[str, Any] = {}
    for start in range(0, len(outputs), chunk):
        out2 = process_entities_record(
            pack_record(outputs[start : start + chunk]), ORIGIN, table2.get
        )
        table2.update(out2.writes)
    rollup = group_rollup("trace", "p", "T", table2["trace:p/T"])
    return {"rollup": rollup, "entities": table1}


@settings(max_examples=80, deadline=None)
@given(history=trace_history(), data=st.data())
def test_trace_totals_equal_the_sum_over_final_entities(
    history: list[dict[str, Any]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(history))
    duplicated = shuffled + data.draw(st.lists(st.sampled_from(history), max_size=5))
    chunk = data.draw(st.integers(1, 8))
    result = _run_pipeline(duplicated, chunk, lambda outputs: data.draw(st.permutations(outputs)))
    finals = [canonical_entity(key, state) for key, state in result["entities"].items()]
    finals = [e for e in finals if e is not None]
    rollup = result["rollup"]
    generations = [e for e in finals if e["kind"] == "generation"]
    assert rollup["tokens"] == sum(e.get("tokens", 0) for e in finals)
    assert rollup["prompt_tokens"] == sum(e["prompt_tokens"] for e in generations)
    costs = [e["cost"] for e in finals if e.get("cost") is not None]
    # exact: totals are kept in integer units of 1e-10 dollars
    assert rollup["cost"] == (
        sum(round(c * COST_UNIT) for c in costs) / COST_UNIT if costs else None
    )
    assert rollup["counts"] == {
        kind: sum(1 for e in finals if e["kind"] == kind) for kind in {e["kind"] for e in finals}
    }
    assert rollup["status"] == "completed" and rollup["session_id"] == "S"
    # and the same as the sequential, unbatched, duplicate-free run
    assert rollup == _run_pipeline(history, 1)["rollup"]
