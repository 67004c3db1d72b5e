"""Nothing the official maxim-py Logger sends is dropped (issue 16): every commit line it
pushes ends in PostgreSQL, either in the row of the entity it models (with its data) or as
a row of ``dead_letters`` whose reason names its entity and action, and the gateway's
counter of those dead letters moves. And what it sends reads back: ``GET /traces/{id}``
shows every kind of node in the tree with its fields, the totals count tool-call and
retrieval latencies and generation costs, and the feedback is there, as is the session's.

The lines are captured where the SDK hands them to HTTP (``MaximAPI.push_logs``), and which
kinds logflume models is written here from the README's Maxim table, not asked of the
gateway.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from maxim import Maxim
from maxim.logger.components.attachment import FileDataAttachment, UrlAttachment

from gateway.maxim import CommitLine, parse_lines
from tests.e2e.conftest import Pipeline, eventually
from tests.integration.pipeline_env import metric

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COUNTER = "logflume_gateway_maxim_dead_letters_total"
LETTERS_OF_RUN = (
    "SELECT * FROM dead_letters WHERE topic = 'gateway.maxim' AND position($1::bytea IN raw) > 0"
)
UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError)
NODES = "trace_nodes"
# (entity, action) -> (table, kind in trace_nodes, where the row's id is: the line's own
# id, data.id, or found by the line's content).
MODELLED = {
    ("trace", "create"): ("traces", None, "self"), ("trace", "update"): ("traces", None, "self"),
    ("trace", "end"): ("traces", None, "self"), ("trace", "add-span"): ("spans", None, "child"),
    ("span", "add-span"): ("spans", None, "child"), ("span", "update"): ("spans", None, "self"),
    ("span", "end"): ("spans", None, "self"),
    ("trace", "add-generation"): ("generations", None, "child"),
    ("span", "add-generation"): ("generations", None, "child"),
    ("generation", "update"): ("generations", None, "self"),
    ("generation", "add-cost"): ("generations", None, "self"),
    ("generation", "result"): ("generations", None, "self"),
    ("generation", "end"): ("generations", None, "self"),
    ("trace", "add-tool-call"): (NODES, "tool_call", "child"),
    ("span", "add-tool-call"): (NODES, "tool_call", "child"),
    ("tool_call", "update"): (NODES, "tool_call", "self"),
    ("tool_call", "result"): (NODES, "tool_call", "self"),
    ("tool_call", "error"): (NODES, "tool_call", "self"),
    ("tool_call", "end"): (NODES, "tool_call", "self"),
    ("trace", "add-retrieval"): (NODES, "retrieval", "child"),
    ("span", "add-retrieval"): (NODES, "retrieval", "child"),
    ("retrieval", "update"): (NODES, "retrieval", "self"),
    ("retrieval", "end"): (NODES, "retrieval", "self"),
    ("trace", "add-event"): (NODES, "event", "child"),
    ("span", "add-event"): (NODES, "event", "child"),
    ("session", "add-event"): (NODES, "event", "child"),
    ("trace", "add-error"): (NODES, "error", "content"),
    ("span", "add-error"): (NODES, "error", "content"),
    ("session", "add-attachment"): (NODES, "attachment", "child"),
    ("trace", "add-attachment"): (NODES, "attachment", "child"),
    ("span", "add-attachment"): (NODES, "attachment", "child"),
    ("generation", "add-attachment"): (NODES, "attachment", "child"),
    ("retrieval", "add-attachment"): (NODES, "attachment", "child"),
    ("session", "create"): (NODES, "session", "self"),
    ("session", "update"): (NODES, "session", "self"),
    ("session", "end"): (NODES, "session", "self"),
    ("trace", "add-feedback"): ("feedback", None, "content"),
    ("session", "add-feedback"): ("feedback", None, "content"),
}  # fmt: skip
# Line keys -> (column, key inside a JSON column or None); keys not here are metadata.
COLUMNS: dict[str, tuple[str, str | None]] = {
    "name": ("name", None), "tags": ("tags", None), "metadata": ("metadata", None),
    "sessionId": ("session_id", None), "startTimestamp": ("start_time", None),
    "endTimestamp": ("end_time", None), "timestamp": ("start_time", None),
    "model": ("model", None), "provider": ("provider", None),
    "modelParameters": ("model_parameters", None), "metrics": ("metrics", None),
    "description": ("description", None), "args": ("args", None), "result": ("result", None),
    "error": ("error", None), "docs": ("documents", None), "output": ("output", None),
    "message": ("error", "message"), "code": ("error", "code"), "errorType": ("error", "type"),
    "url": ("attachment", "url"), "key": ("attachment", "key"), "type": ("attachment", "type"),
    "mimeType": ("attachment", "mime_type"), "mime_type": ("attachment", "mime_type"),
    "size": ("attachment", "size"), "score": ("value", None), "comment": ("comment", None),
    "cost": ("caller_cost", None), "messages": ("messages", None), "input": ("input", None),
}  # fmt: skip
# Keys that name the node or its parent (said by the row's ids).
IMPLIED = {"id", "spanId"}


def _fetch(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as dicts, their jsonb columns decoded."""

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn, timeout=30)
        try:
            statement = await conn.prepare(sql, timeout=30)
            jsonb = {a.name for a in statement.get_attributes() if a.type.name == "jsonb"}
            rows = [dict(r) for r in await statement.fetch(*args, timeout=30)]
        finally:
            await conn.close()
        for row in rows:
            for name in jsonb:
                if isinstance(row[name], str):
                    row[name] = orjson.loads(row[name])
        return rows

    return asyncio.run(run())


def _counter(pipeline: Pipeline, **labels: str) -> float:
    return metric(httpx.get(f"{pipeline.url}/metrics").text, COUNTER, **labels)


@dataclass
class Sent:
    run: str
    lines: list[str]

    def id(self, name: str) -> str:
        return f"{self.run}-{name}"


def _completion(cid: str, model: str, content: str, prompt: int, output: int) -> dict[str, Any]:
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output,
                  "total_tokens": prompt + output},
    }  # fmt: skip


def _send_everything(maxim: Maxim, run: str) -> Sent:
    """A session with a trace in it, and every entity, action and attachment the logger's
    components have (maxim-py 3.14: ``maxim/logger/components``), on the session, the
    trace, a span, a generation and a retrieval. The lines the SDK pushed, in order."""
    sent = Sent(run, [])
    logger = maxim.logger({"id": f"kept-bot-{run}", "auto_flush": False})
    api = logger.writer.maxim_api
    push = api.push_logs

    def recording(repository_id: str, logs: str) -> None:
        sent.lines.extend(line for line in logs.split("\n") if line.strip())
        push(repository_id, logs)

    api.push_logs = recording
    i = sent.id
    session = logger.session({"id": i("ses"), "name": "support chat", "tags": {"tier": "gold"}})
    session.add_tag("channel", "web")
    session.event(i("sev"), "opened", {"via": "widget"})
    session.feedback({"score": 5, "comment": "solved"})
    session.add_attachment(UrlAttachment(url="https://example.com/t.png", id=i("sat"), name="t"))
    trace = session.trace({"id": i("tr"), "name": "kept", "tags": {"suite": "i16"}})
    trace.set_input("where is my parcel?")
    trace.add_metadata({"customer": "c-1"})
    trace.add_metric("faithfulness", 0.9)
    trace.event(i("tev"), "routed", {"queue": "parcels"}, metadata={"attempt": 1})
    trace.add_error({"message": "cache down", "code": "E42", "type": "infra"})
    trace.feedback({"score": 4, "comment": "helpful"})
    trace.add_attachment(
        FileDataAttachment(
            data=b"%PDF-1.4 receipt", id=i("tat"), name="receipt.pdf", mime_type="application/pdf"
        )
    )
    lookup = trace.tool_call({"id": i("ttc"), "name": "lookup", "description": "finds orders",
                              "args": '{"order": "O-1"}'})  # fmt: skip
    time.sleep(0.02)
    lookup.error({"message": "timeout", "code": "504", "type": "net"})
    policy = trace.retrieval({"id": i("tr0"), "name": "faq"})
    policy.input("parcel faq")
    time.sleep(0.02)
    policy.output("parcels ship in 2 days")
    classify = trace.generation(
        {
            "id": i("tg"),
            "provider": "openai",
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "classify"}],
        }
    )
    classify.result(_completion(f"chatcmpl-{run}-c", "gpt-4o", "parcel", 1000, 10))
    span = trace.span({"id": i("sp"), "name": "answer"})
    span.add_metadata({"step": "1"})
    span.add_tag("stage", "draft")
    span.add_error({"message": "slow model"})
    span.event(i("spev"), "cache-miss", {"cache": "parcels"})
    span.add_attachment(UrlAttachment(url="https://example.com/s.txt", id=i("spat")))
    generation = span.generation({
        "id": i("g"), "provider": "openai", "model": "gpt-4o", "name": "draft",
        "messages": [{"role": "user", "content": "where is my parcel?"}],
        "model_parameters": {"temperature": 0.2},
    })  # fmt: skip
    generation.set_model("gpt-4o-mini")
    generation.set_model_parameters({"temperature": 0.4})
    generation.add_message({"role": "user", "content": "and the tracking number?"})
    generation.add_metric("tokens_per_s", 80.0)
    generation.add_tag("variant", "b")
    generation.add_cost({"input": 0.001, "output": 0.002, "total": 0.003})
    generation.add_attachment(UrlAttachment(url="https://example.com/g.png", id=i("gat")))
    generation.result(_completion(f"chatcmpl-{run}", "gpt-4o-mini", "ok", 120, 30))
    failed = span.generation({"id": i("g2"), "provider": "openai", "model": "gpt-4o",
                              "messages": [{"role": "user", "content": "retry"}]})  # fmt: skip
    failed.error({"message": "rate limited", "code": "429"})
    retrieval = span.retrieval({"id": i("r"), "name": "policies", "tags": {"index": "kb"}})
    retrieval.input("parcel policy")
    retrieval.add_metric("recall", 0.8)
    retrieval.add_attachment(UrlAttachment(url="https://example.com/r.md", id=i("rat")))
    time.sleep(0.02)
    retrieval.output(["parcels ship in 2 days", "tracking is by email"])
    tool = span.tool_call({"id": i("tc"), "name": "track", "description": "tracks parcels",
                           "args": '{"parcel": "P-1"}', "tags": {"api": "v2"}})  # fmt: skip
    tool.update({"description": "tracks parcels by id"})
    tool.add_metric("calls", 1.0)
    time.sleep(0.02)
    tool.result("in transit")
    tool.evaluate().with_evaluators("tone")
    trace.evaluate().with_variables({"answer": "ok"}, ["tone"])
    sub = span.span({"id": i("sp2"), "name": "format"})
    sub.end()
    span.end()
    trace.set_output("it is in transit")
    trace.end()
    session.end()
    logger.writer.flush(is_sync=True)  # Logger.flush() only submits the push to a thread
    logger.writer.flush_upload_attachment_logs(is_sync=True)  # asks upload-url, then the line
    logger.writer.flush(is_sync=True)
    return sent


def _table_rows(dsn: str, run: str) -> dict[str, list[dict[str, Any]]]:
    like = f"{run}-%"
    of_run = "WHERE trace_id LIKE $1 OR session_id LIKE $1"
    return {
        "traces": _fetch(dsn, "SELECT * FROM traces WHERE id LIKE $1", like),
        "spans": _fetch(dsn, "SELECT * FROM spans WHERE id LIKE $1", like),
        "generations": _fetch(dsn, "SELECT * FROM generations WHERE id LIKE $1", like),
        NODES: _fetch(dsn, f"SELECT * FROM trace_nodes {of_run}", like),
        "feedback": _fetch(dsn, f"SELECT * FROM feedback {of_run}", like),
    }


def _row_of(line: CommitLine, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    table, kind, where = MODELLED[(line.entity, line.action)]
    candidates = [r for r in rows[table] if kind is None or r.get("kind") == kind]
    if where == "self":
        return next((r for r in candidates if r["id"] == line.entity_id), None)
    if where == "child":
        return next((r for r in candidates if r["id"] == line.data.get("id")), None)
    if table == "feedback":  # by what it rates and its comment
        target = "session_id" if line.entity == "session" else "trace_id"
        return next((r for r in candidates if r[target] == line.entity_id
                     and r["comment"] == line.data.get("comment")), None)  # fmt: skip
    return next((r for r in candidates if (r["error"] or {}).get("message")
                 == line.data.get("message")), None)  # fmt: skip


def _missing(line: CommitLine, row: dict[str, Any] | None) -> list[str]:
    """What of a modelled line's data its row does not hold (empty: all of it)."""
    if row is None:
        return ["the row"]
    missing = []
    for key, value in line.data.items():
        if key in IMPLIED or value in ({}, [], None):
            continue  # nothing to look for (an empty tags object is no fact)
        column, inner = COLUMNS.get(key, ("metadata", key))
        if line.entity == "generation" and key == "messages":
            column = "added_messages"  # add_message appends
        elif key == "input":
            column = {"retrieval": "query"}.get(line.entity, "input")
        elif key == "result" and line.entity == "generation":  # a completion, or a failure
            if row.get("result") is None and row.get("error") is None:
                missing.append(key)
            continue
        stored = row.get(column)
        if inner is not None:
            stored = stored.get(inner) if isinstance(stored, dict) else None
        if stored is None:
            missing.append(key)
        elif isinstance(value, dict) and isinstance(stored, dict):
            if key == "metrics" and value.keys() == {"name", "value"}:
                value = {value["name"]: value["value"]}
            if not value.keys() <= stored.keys():
                missing.append(key)
    return missing


@pytest.fixture(scope="module")
def everything(pipeline: Pipeline, maxim: Maxim) -> Iterator[tuple[Sent, float]]:
    before = _counter(pipeline)
    yield _send_everything(maxim, f"kept-{uuid.uuid4().hex[:10]}"), before


def test_every_line_the_maxim_sdk_sends_is_stored_or_dead_lettered(
    pipeline: Pipeline, everything: tuple[Sent, float]
) -> None:
    sent, before = everything
    dsn = pipeline.env.settings.dsn
    lines, errors = parse_lines("\n".join(sent.lines))
    assert errors == [] and len(lines) == len(sent.lines)
    kinds = {(line.entity, line.action) for line in lines}
    # Every kind the brief lists was sent, and every (entity, action) above was.
    assert set(MODELLED) <= kinds, set(MODELLED) - kinds
    modelled = [line for line in lines if (line.entity, line.action) in MODELLED]
    others = [line for line in lines if (line.entity, line.action) not in MODELLED]
    assert {(line.entity, line.action) for line in others} == {
        ("tool_call", "evaluate"), ("trace", "evaluate")
    }  # fmt: skip

    def stored() -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[str]]] | None:
        try:
            rows = _table_rows(dsn, sent.run)
        except UNAVAILABLE:  # the shared PostgreSQL restarted by another suite: ask again
            return None
        unkept = {line.text: _missing(line, _row_of(line, rows)) for line in modelled}
        unkept = {text: keys for text, keys in unkept.items() if keys}
        trace = next((r for r in rows["traces"] if r["id"] == sent.id("tr")), None)
        done = trace is not None and trace["status"] == "error" and trace["rollup_version"]
        return (rows, unkept) if done and not unkept else None

    try:
        rows, _ = eventually(stored, timeout_s=180)
    except TimeoutError:
        rows = _table_rows(dsn, sent.run)
        unkept = {line.text: _missing(line, _row_of(line, rows)) for line in modelled}
        pytest.fail(f"not stored: { {t: k for t, k in unkept.items() if k} }\n{pipeline.tails()}")

    def dead_letters() -> dict[str, dict[str, Any]] | None:
        try:
            found = _fetch(dsn, LETTERS_OF_RUN, sent.run.encode())
        except UNAVAILABLE:
            return None
        by_raw = {bytes(r["raw"]).decode(): r for r in found}
        return by_raw if all(line.text in by_raw for line in others) else None

    letters = eventually(dead_letters, timeout_s=60)
    for line in others:
        row = letters[line.text]
        assert row["reason"] == (f"maxim {line.entity}.{line.action}: not modelled by "
                                 "logflume; kept verbatim (project proj-a)")  # fmt: skip
        assert row["event_id"].startswith("mx_")
    # Nothing is missing or extra: every line sent is a stored line or a dead letter.
    assert len(modelled) + len(letters) == len(sent.lines)
    assert set(letters) == {line.text for line in others}
    assert _counter(pipeline) - before == len(others)
    # Never an attachment's bytes: its size and MIME type (from the upload URL) are kept.
    (receipt,) = [r for r in rows[NODES] if r["id"] == sent.id("tat")]
    assert receipt["attachment"]["size"] == len(b"%PDF-1.4 receipt")
    assert receipt["attachment"]["name"] == "receipt.pdf"
    assert receipt["attachment"]["mime_type"] == "application/pdf"
    assert "PDF-1.4" not in orjson.dumps(receipt).decode()


def _tree(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield node
        yield from _tree(node["children"])


def test_the_trace_tree_shows_every_kind_with_its_fields_and_totals(
    pipeline: Pipeline, everything: tuple[Sent, float]
) -> None:
    sent, _ = everything
    i = sent.id

    def view() -> dict[str, Any] | None:
        answer = pipeline.get(f"/traces/{i('tr')}")
        if answer.status_code != 200:
            return None
        body = answer.json()
        nodes = {n["id"]: n for n in _tree(body["children"])}
        ready = body["status"] == "error" and body["latencies"].get("retrieval")
        wanted = {i(n) for n in ("tc", "ttc", "r", "tr0", "tev", "spev", "tat", "rat", "gat")}
        return body if ready and wanted <= nodes.keys() and body["feedback"] else None

    try:
        trace = eventually(view, timeout_s=180)
    except TimeoutError:
        seen = pipeline.get(f"/traces/{i('tr')}").text
        pytest.fail(f"{seen}\n{pipeline.tails()}")
    nodes = {n["id"]: n for n in _tree(trace["children"])}
    span = nodes[i("sp")]
    under_span = {child["id"] for child in span["children"]}
    assert {i("g"), i("g2"), i("r"), i("tc"), i("spev"), i("spat"), i("sp2")} <= under_span
    tool = nodes[i("tc")]
    assert tool["kind"] == "tool_call" and tool["name"] == "track"
    assert tool["description"] == "tracks parcels by id" and tool["args"] == '{"parcel": "P-1"}'
    assert tool["result"] == "in transit" and tool["status"] == "success"
    assert tool["tags"] == {"api": "v2"} and tool["metrics"] == {"calls": 1.0}
    assert tool["latency"] >= 0.02
    failed_tool = nodes[i("ttc")]
    assert failed_tool["parent_id"] is None and failed_tool["status"] == "error"
    assert failed_tool["error"] == {"message": "timeout", "code": "504", "type": "net"}
    retrieval = nodes[i("r")]
    assert retrieval["query"] == "parcel policy"
    assert retrieval["documents"] == ["parcels ship in 2 days", "tracking is by email"]
    assert retrieval["metrics"] == {"recall": 0.8} and retrieval["latency"] >= 0.02
    assert [c["id"] for c in retrieval["children"]] == [i("rat")]  # its attachment
    assert nodes[i("rat")]["attachment"]["url"] == "https://example.com/r.md"
    event = nodes[i("tev")]
    assert (event["kind"], event["name"]) == ("event", "routed")
    assert event["tags"] == {"queue": "parcels"}
    assert event["metadata"] == {"attempt": "1"}  # maxim-py sends metadata values as strings
    errors = {n["error"]["message"]: n for n in nodes.values() if n["kind"] == "error"}
    assert errors["cache down"]["error"] == {"message": "cache down", "code": "E42",
                                             "type": "infra"}  # fmt: skip
    assert errors["slow model"]["parent_id"] == i("sp")
    generation = nodes[i("g")]
    assert generation["model"] == "gpt-4o-mini" and generation["cost_source"] == "provided"
    assert generation["usage"]["cost"] == pytest.approx(0.003)
    assert generation["metrics"] == {"tokens_per_s": 80.0}
    assert [c["id"] for c in generation["children"]] == [i("gat")]
    # Totals: the caller's cost and the computed one; the nodes' own latencies per kind.
    computed = nodes[i("tg")]["usage"]["cost"]
    assert nodes[i("tg")]["cost_source"] == "computed" and computed > 0
    assert trace["totals"]["cost"] == pytest.approx(0.003 + computed)
    assert trace["totals"]["prompt_tokens"] == 1120
    assert trace["latencies"]["tool_call"] == pytest.approx(
        nodes[i("tc")]["latency"] + nodes[i("ttc")]["latency"], abs=1e-6
    )
    assert trace["latencies"]["retrieval"] == pytest.approx(
        nodes[i("r")]["latency"] + nodes[i("tr0")]["latency"], abs=1e-6
    )
    assert trace["counts"]["tool_call"] == 2 and trace["counts"]["attachment"] == 4
    assert trace["metrics"] == {"faithfulness": 0.9}
    assert [(f["value"], f["comment"]) for f in trace["feedback"]] == [(4, "helpful")]

    def session() -> dict[str, Any] | None:
        answer = pipeline.get(f"/sessions/{i('ses')}")
        body = answer.json() if answer.status_code == 200 else {}
        done = body.get("end_time") and body.get("feedback") and len(body.get("nodes", [])) == 2
        return body if done and body.get("traces") else None

    found = eventually(session, timeout_s=60)
    assert found["name"] == "support chat"
    assert found["tags"] == {"tier": "gold", "channel": "web"}
    assert [(f["value"], f["comment"]) for f in found["feedback"]] == [(5, "solved")]
    assert {n["kind"] for n in found["nodes"]} == {"event", "attachment"}
    assert [t["id"] for t in found["traces"]] == [i("tr")]


def test_deleting_the_session_erases_every_node_and_feedback(
    pipeline: Pipeline, everything: tuple[Sent, float]
) -> None:
    """After the tests above: ``DELETE /sessions/{id}`` erases the session's trace with all
    its members (tool calls, retrievals, events, errors, attachments included), the
    session's own node, events and attachments, and the feedback of both."""
    sent, _ = everything
    dsn = pipeline.env.settings.dsn
    stored = sum(len(rows) for rows in _table_rows(dsn, sent.run).values())
    assert stored >= 23  # 1 trace, 2 spans, 3 generations, 15 nodes, 2 feedback
    answer = httpx.delete(f"{pipeline.url}/sessions/{sent.id('ses')}",
                          headers={"X-API-KEY": pipeline.key()})  # fmt: skip
    assert answer.status_code == 200, answer.text
    deleted = answer.json()["deleted"]
    assert deleted["tool_call"] == 2 and deleted["session"] == 1 and deleted["attachment"] == 5

    def gone() -> bool | None:
        try:
            left = _table_rows(dsn, sent.run)
        except UNAVAILABLE:
            return None
        return True if not any(left.values()) else None

    try:
        eventually(gone, timeout_s=120)
    except TimeoutError:
        rows = _table_rows(dsn, sent.run)
        left = {table: [row["id"] for row in found] for table, found in rows.items()}
        pytest.fail(f"left after the deletion: {left}\n{pipeline.tails()}")
