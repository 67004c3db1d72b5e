"""Maxim commit lines (captured from maxim-py 3.14 pushing to a local server) to events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from gateway.maxim import (
    DEAD_LETTER_TOPIC,
    MAXIM_LINES,
    not_modelled,
    parse_lines,
    referenced_nodes,
    refused,
    translate,
)
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
        "g2": ("generation", "tr1"), "tr2": ("trace", "tr2"), "tc1": ("tool_call", "tr1"),
        "r1": ("retrieval", "tr1"),
    }  # fmt: skip
    nodes = [(n.kind, n.id, n.action) for n in by_type["node"]]
    assert nodes == [
        ("event", "ev1", "create"), ("tool_call", "tc1", "create"),
        ("tool_call", "tc1", "update"), ("tool_call", "tc1", "end"),
        ("retrieval", "r1", "create"), ("retrieval", "r1", "update"), ("retrieval", "r1", "end"),
        ("retrieval", "r1", "update"), ("retrieval", "r1", "end"), ("session", "s2", "create"),
        ("session", "s2", "end"),
    ]  # fmt: skip
    (event,) = [n for n in by_type["node"] if n.kind == "event"]
    assert (event.trace_id, event.parent_id, event.name) == ("tr1", "sp1", "some event")
    assert event.start_time == event.end_time and event.tags == {"x": "y"}
    tool = [n for n in by_type["node"] if n.id == "tc1"]
    assert (tool[0].name, tool[0].description, tool[0].args) == ("search", "d", "{}")
    assert tool[0].parent_id == "sp1" and tool[1].result == "res"
    retrieval = [n for n in by_type["node"] if n.id == "r1"]
    assert retrieval[1].query == "q" and retrieval[3].documents == ["doc"]
    (feedback,) = by_type["feedback"]
    assert (feedback.trace_id, feedback.value, feedback.comment) == ("tr1", 1, "good")
    session = [n for n in by_type["node"] if n.kind == "session"]
    assert session[0].session_id == "s2" and session[0].trace_id is None
    assert translation.unmodelled == []
    assert translation.held == [] and translation.errors == []
    # Every line is an event or a generation's end folded into its result.
    lines, _ = parse_lines(LINES)
    folded = 2
    assert len(envelopes) + folded == len(lines)


def test_every_kind_of_line_the_sdk_sends_becomes_an_event_but_evaluate():
    """Captured from maxim-py 3.14.20 (tests/unit/gateway/maxim_lines_all.txt: a session,
    a trace and a span with every child, action and attachment the components have)."""
    text = (Path(__file__).parent / "maxim_lines_all.txt").read_text()
    lines, errors = parse_lines(text)
    assert errors == []
    translation, envelopes = translate("p", lines, {}, RECEIVED)
    events = [validate_event(e) for e in envelopes]
    assert translation.errors == [] and translation.held == []
    assert {(line.entity, line.action) for line in translation.unmodelled} <= {
        (entity, "evaluate") for entity in MAXIM_LINES
    }
    kinds = {e.body.kind for e in events if e.type == "node"}
    assert kinds == {"tool_call", "retrieval", "event", "error", "attachment", "session"}
    by_id = {}
    for event in events:
        body = event.body
        by_id.setdefault(getattr(body, "id", None), []).append(body)
    (attachment,) = [b for b in by_id["att-file"]]
    assert attachment.attachment.mime_type == "text/plain" and attachment.trace_id == "t1"
    assert attachment.attachment.key.endswith("/att-file")
    costs = [b.cost for b in by_id["g1"] if getattr(b, "cost", None)]
    assert [c.total for c in costs] == [0.3]
    added = [b.add_messages for b in by_id["g1"] if getattr(b, "add_messages", None)]
    assert [[(m.role, m.content) for m in batch] for batch in added] == [[("user", "more")]]
    errors_ = [b for b in events if b.type == "node" and b.body.kind == "error"]
    assert {e.body.error.message for e in errors_} == {"boom", "spanerr"}
    feedback = [e.body for e in events if e.type == "feedback"]
    assert {(f.trace_id, f.session_id, f.value) for f in feedback} == {
        (None, "s1", 5), ("t1", None, 3)
    }  # fmt: skip


def test_unmodelled_lines_become_dead_letters_naming_entity_and_action():
    text = (
        'tool_call{id=tc1,action=evaluate,data={"with": "evaluators", "evaluators": ["x"]}}\n'
        'trace{id=t1,action=evaluate,data={"with": "variables", "variables": {"a": "b"}}}'
    )
    lines, _ = parse_lines(text)
    translation, _ = translate("proj-a", lines, {}, RECEIVED)
    kept = not_modelled("proj-a", translation.unmodelled)
    by_line = {k.letter.raw.decode(): k for k in kept}
    tool = by_line[text.split("\n")[0]]
    assert tool.letter.reason == (
        "maxim tool_call.evaluate: not modelled by logflume; kept verbatim (project proj-a)"
    )
    assert tool.labels == ("tool_call", "evaluate", "not_modelled")
    assert tool.letter.origin.topic == DEAD_LETTER_TOPIC and tool.letter.index == 0
    # The origin (the dead_letters row's unique key) and event id hash project and line:
    # a re-sent batch is stored once, another project's identical line apart.
    again = not_modelled("proj-a", translation.unmodelled)
    other = not_modelled("proj-b", translation.unmodelled)
    assert [k.letter for k in again] == [k.letter for k in kept]
    assert {k.letter.origin for k in other}.isdisjoint({k.letter.origin for k in kept})
    assert len({k.letter.origin.offset for k in kept}) == len(kept)
    assert all(0 <= k.letter.origin.offset < 2**63 for k in kept)


def test_a_generation_end_without_its_result_in_the_batch_is_an_end_event():
    end = 'generation{id=g1,action=end,data={"endTimestamp": "2026-01-01T00:00:05Z"}}'
    lines, _ = parse_lines(end)
    translation, envelopes = translate("p", lines, {"g1": "t1"}, RECEIVED)
    (event,) = [validate_event(e) for e in envelopes]
    assert event.type == "generation" and event.body.action == "end"
    assert event.body.end_time is not None and event.body.trace_id == "t1"
    # Unknown node: held until its create line arrives.
    translation, _ = translate("p", lines, {}, RECEIVED)
    assert translation.held == lines and translation.unmodelled == []


def test_keys_no_field_takes_join_the_metadata():
    text = (
        'trace{id=t,action=create,data={"name": "n", "region": "eu", "metadata": {"a": 1}}}\n'
        'trace{id=t,action=update,data={"metrics": {"m": 0.5}}}\n'
        'trace{id=t,action=add-tool-call,data={"id": "tc", "name": "x"}}\n'
        'tool_call{id=tc,action=update,data={"metrics": {"name": "latency", "value": 3}}}'
    )
    lines, _ = parse_lines(text)
    _, envelopes = translate("p", lines, {}, RECEIVED)
    bodies = [validate_event(e).body for e in envelopes]
    assert bodies[0].metadata == {"region": "eu", "a": 1}
    assert bodies[1].metrics == {"m": 0.5} and bodies[3].metrics == {"latency": 3}


def test_labels_are_bounded_to_what_maxim_py_sends():
    text = "widget{id=w,action=create,data={}}\ntrace{id=t,action=explode,data={}}"
    lines, _ = parse_lines(text)
    translation, _ = translate("p", lines, {}, RECEIVED)
    assert [k.labels for k in not_modelled("p", translation.unmodelled)] == [
        ("other", "other", "not_modelled"), ("trace", "other", "not_modelled")
    ]  # fmt: skip
    assert "widget.create" in not_modelled("p", translation.unmodelled)[0].letter.reason


def test_refused_lines_become_dead_letters_with_every_field_and_reason():
    text = 'nonsense {\ntrace{id=t,action=add-span,data={"name": "no id"}}'
    lines, errors = parse_lines(text)
    translation, _ = translate("p", lines, {}, RECEIVED)
    kept = refused("p", lines, [*errors, *translation.errors], text)
    assert [k.letter.raw.decode() for k in kept] == text.split("\n")
    assert kept[0].labels == ("unparsed", "unparsed", "refused")
    assert kept[0].letter.reason.startswith("maxim line: refused (line: is not entity{")
    assert kept[1].labels == ("trace", "add-span", "refused")
    assert kept[1].letter.reason == (
        "maxim trace.add-span: refused (data.id: is required); kept verbatim (project p)"
    )


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


def test_a_tool_calls_result_before_its_create_is_held_then_placed():
    result = 'tool_call{id=tc9,action=result,data={"result": "done"}}'
    attachment = 'retrieval{id=r9,action=add-attachment,data={"id": "a9", "url": "https://x"}}'
    lines, _ = parse_lines(f"{result}\n{attachment}")
    assert referenced_nodes(lines) == {"tc9", "r9"}
    translation, envelopes = translate("p", lines, {}, RECEIVED)
    assert envelopes == [] and translation.held == lines
    _, envelopes = translate("p", lines, {"tc9": "tr9", "r9": "tr9"}, RECEIVED)
    tool, node = (validate_event(e).body for e in envelopes)
    assert (tool.kind, tool.id, tool.trace_id, tool.result) == ("tool_call", "tc9", "tr9", "done")
    assert (node.kind, node.parent_id, node.attachment.url) == ("attachment", "r9", "https://x")
