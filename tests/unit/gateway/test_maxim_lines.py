"""Maxim commit lines (captured from maxim-py 3.14 pushing to a local server) to events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from gateway.maxim import parse_lines, referenced_nodes, translate
from producers.contract import validate_event

LINES = (Path(__file__).parent / "maxim_lines.txt").read_text()
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def _events(text: str, known: dict[str, str] | None = None):
    lines, errors = parse_lines(text)
    assert errors == []
    translation, envelopes = translate("p", lines, known or {}, RECEIVED)
    return translation, envelopes


def test_captured_sdk_lines_become_valid_events_with_their_trace():
    translation, envelopes = _events(LINES)
    events = [validate_event(e) for e in envelopes]  # every one passes the wire contract
    by_type: dict[str, list] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event.body)
    assert [t.action for t in by_type["trace"] if t.id == "tr1"] == [
        "create", "update", "update", "update", "end"
    ]  # fmt: skip
    (create,) = [t for t in by_type["trace"] if t.id == "tr1" and t.action == "create"]
    assert create.session_id == "s1" and create.name == "checkout"
    (span,) = [s for s in by_type["span"] if s.action == "create"]
    assert (span.id, span.trace_id, span.parent_id) == ("sp1", "tr1", None)
    assert {s.action for s in by_type["span"]} == {"create", "update", "end"}
    generations = {g.id: g for g in by_type["generation"]}
    assert generations["g1"].trace_id == "tr1" and generations["g1"].parent_id == "sp1"
    assert generations["g2"].trace_id == "tr1" and generations["g2"].parent_id is None
    assert generations["g1"].model_parameters == {"temperature": "0.7"}
    (result,) = by_type["generation_result"]
    assert result.generation_id == "g1" and result.result.usage.prompt_tokens == 100
    assert result.end_time is not None  # the generation's end line is folded in
    (error,) = by_type["generation_error"]
    assert error.error.message == "boom" and error.error.code == "500"
    assert translation.nodes == {
        "tr1": ("trace", "tr1"), "sp1": ("span", "tr1"), "g1": ("generation", "tr1"),
        "g2": ("generation", "tr1"), "tr2": ("trace", "tr2"),
    }  # fmt: skip
    # No contract event for these: acknowledged and counted.
    assert translation.ignored["tool_call:result"] == 1
    assert translation.ignored["session:create"] == 1
    assert translation.ignored["trace:add-feedback"] == 1


def test_event_ids_hash_the_line_so_a_resent_batch_deduplicates():
    _, first = _events(LINES)
    _, again = _events(LINES)
    assert [e["event_id"] for e in first] == [e["event_id"] for e in again]
    assert len({e["event_id"] for e in first}) == len(first)
    # Later lines of the batch carry later timestamps (last writer wins in order).
    stamps = [e["ts"] for e in first]
    assert stamps == sorted(stamps)


def test_a_result_for_a_generation_not_known_yet_is_held():
    result = (
        'generation{id=g9,action=result,data={"result": {"id": "c", "created": 1, "choices": [],'
        ' "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}}}'
    )
    lines, _ = parse_lines(result)
    assert referenced_nodes(lines) == {"g9"}
    translation, envelopes = translate("p", lines, {}, RECEIVED)
    assert envelopes == [] and translation.errors == [] and translation.held == lines
    translation, envelopes = translate("p", lines, {"g9": "tr9"}, RECEIVED)
    assert envelopes[0]["body"]["trace_id"] == "tr9"
    assert validate_event(envelopes[0]).type == "generation_result"


def test_a_completion_without_id_or_created_is_completed():
    line = 'generation{id=g1,action=result,data={"result": {"choices": [], "usage": {}}}}'
    lines, _ = parse_lines(line)
    _, envelopes = translate("p", lines, {"g1": "t"}, RECEIVED)
    body = validate_event(envelopes[0]).body
    assert body.result.id == "g1" and body.result.created == int(RECEIVED.timestamp())


def test_malformed_lines_are_named():
    text = "nonsense\ntrace{id=t,action=create,data={not json}}\ntrace{id=t,action=create,data=[1]}"
    lines, errors = parse_lines(text)
    assert lines == []
    assert [(i, e.field) for i, e in errors] == [(0, "line"), (1, "data"), (2, "data")]


def test_data_may_hold_braces_and_null():
    text = 'trace{id=t,action=update,data={"output": "a } b {"}}\ntrace{id=t,action=end,data=null}'
    lines, errors = parse_lines(text)
    assert errors == [] and lines[0].data == {"output": "a } b {"} and lines[1].data == {}
    _, envelopes = translate("p", lines, {}, RECEIVED)
    assert orjson.loads(orjson.dumps(envelopes[0]))["body"]["output"] == "a } b {"
