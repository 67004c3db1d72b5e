"""Nothing the official maxim-py Logger sends is dropped (issue 16): every commit line it
pushes ends in PostgreSQL, either in the table of the entity it models or as a row of
``dead_letters`` whose reason names its entity and action, and the gateway's counter of
those dead letters moves.

The lines are captured where the SDK hands them to HTTP (``MaximAPI.push_logs``), and which
kinds logflume models is written here from the README's Maxim table, not asked of the
gateway.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from maxim import Maxim

from gateway.maxim import parse_lines
from tests.e2e.conftest import Pipeline, eventually
from tests.integration.pipeline_env import metric

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

COUNTER = "logflume_gateway_maxim_dead_letters_total"
# (entity, action) -> (table, where the node's id is: the line's own id or data.id)
MODELLED = {
    ("trace", "create"): ("traces", "self"), ("trace", "update"): ("traces", "self"),
    ("trace", "end"): ("traces", "self"), ("trace", "add-span"): ("spans", "child"),
    ("span", "add-span"): ("spans", "child"), ("span", "update"): ("spans", "self"),
    ("span", "end"): ("spans", "self"), ("trace", "add-generation"): ("generations", "child"),
    ("span", "add-generation"): ("generations", "child"),
    ("generation", "result"): ("generations", "self"),
    ("generation", "end"): ("generations", "self"),  # folded into its result (same batch)
}  # fmt: skip
COLUMNS = {
    "name": "name", "tags": "tags", "metadata": "metadata", "input": "input", "output": "output",
    "sessionId": "session_id", "startTimestamp": "start_time", "endTimestamp": "end_time",
    "model": "model", "provider": "provider", "messages": "messages",
    "modelParameters": "model_parameters",
}  # fmt: skip
# Keys of modelled lines with no column of their own: the node's id, and a generation's
# span, which its parent_id says (checked below).
IMPLIED = {"id", "spanId"}


def _fetch(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn, timeout=30)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args, timeout=30)]
        finally:
            await conn.close()

    return asyncio.run(run())


def _counter(pipeline: Pipeline, **labels: str) -> float:
    return metric(httpx.get(f"{pipeline.url}/metrics").text, COUNTER, **labels)


def _send_everything(maxim: Maxim, run: str) -> list[str]:
    """A trace with tags, metadata, input and output; a span with metadata; a generation
    and its result; a retrieval with input and output; a tool call and its result; an event
    on the span; feedback on the trace. The lines the SDK pushed, in order."""
    sent: list[str] = []
    logger = maxim.logger({"id": "kept-bot", "auto_flush": False})
    api = logger.writer.maxim_api
    push = api.push_logs

    def recording(repository_id: str, logs: str) -> None:
        sent.extend(line for line in logs.split("\n") if line.strip())
        push(repository_id, logs)

    api.push_logs = recording
    trace = logger.trace({"id": f"{run}-tr", "name": "kept", "tags": {"suite": "i16"}})
    trace.set_input("where is my parcel?")
    trace.add_metadata({"customer": "c-1"})
    trace.add_tag("channel", "web")
    span = trace.span({"id": f"{run}-sp", "name": "answer"})
    span.add_metadata({"step": "1"})
    generation = span.generation({
        "id": f"{run}-g", "provider": "openai", "model": "gpt-4o", "name": "draft",
        "messages": [{"role": "user", "content": "where is my parcel?"}],
        "model_parameters": {"temperature": 0.2},
    })  # fmt: skip
    generation.result({
        "id": f"chatcmpl-{run}", "object": "chat.completion", "created": int(time.time()),
        "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    })  # fmt: skip
    retrieval = span.retrieval({"id": f"{run}-r", "name": "policies"})
    retrieval.input("parcel policy")
    retrieval.output(["parcels ship in 2 days", "tracking is by email"])
    tool = span.tool_call({"id": f"{run}-tc", "name": "track", "description": "tracks",
                           "args": '{"parcel": "P-1"}'})  # fmt: skip
    tool.result("in transit")
    span.event(f"{run}-ev", "cache-miss", {"cache": "parcels"})
    trace.feedback({"score": 1, "comment": "helpful"})
    span.end()
    trace.set_output("it is in transit")
    trace.end()
    logger.writer.flush(is_sync=True)  # Logger.flush() only submits the push to a thread
    return sent


def _stored(row: dict[str, Any] | None, data: dict[str, Any]) -> list[str]:
    """What of a modelled line's data the row does not hold (empty: all of it)."""
    if row is None:
        return ["the row"]
    missing = []
    for key, value in data.items():
        if key in IMPLIED or key == "result" or value in ({}, []):
            continue  # nothing to look for (an empty tags object is no fact)
        column = COLUMNS.get(key)
        stored = row.get(column) if column else None
        if isinstance(stored, str) and column in ("tags", "metadata", "model_parameters",
                                                  "messages"):  # fmt: skip
            stored = orjson.loads(stored)
        if column is None or stored is None:
            missing.append(key)
        elif isinstance(value, dict) and isinstance(stored, dict):
            if not value.keys() <= stored.keys():
                missing.append(key)
        elif isinstance(value, str) and column not in ("start_time", "end_time"):
            if stored != value:
                missing.append(key)
    return missing


def test_every_line_the_maxim_sdk_sends_is_stored_or_dead_lettered(
    pipeline: Pipeline, maxim: Maxim
):
    dsn = pipeline.env.settings.dsn
    before = _counter(pipeline)
    tool_before = _counter(pipeline, entity="tool_call", action="result", kind="not_modelled")
    run = f"kept-{uuid.uuid4().hex[:10]}"
    sent = _send_everything(maxim, run)
    lines, errors = parse_lines("\n".join(sent))
    assert errors == [] and len(lines) == len(sent)
    kinds = {(line.entity, line.action) for line in lines}
    # What the brief asked to send is there, modelled or not.
    assert {("tool_call", "result"), ("span", "add-retrieval"), ("retrieval", "update"),
            ("span", "add-event"), ("trace", "add-feedback"), ("generation", "result"),
            ("span", "add-tool-call")} <= kinds  # fmt: skip
    modelled = [line for line in lines if (line.entity, line.action) in MODELLED]
    others = [line for line in lines if (line.entity, line.action) not in MODELLED]
    assert modelled and others

    def tables() -> dict[str, dict[str, dict[str, Any]]] | None:
        sql = "SELECT * FROM {} WHERE id LIKE $1"
        found = {table: {r["id"]: r for r in _fetch(dsn, sql.format(table), f"{run}-%")}
                 for table in ("traces", "spans", "generations")}  # fmt: skip
        trace = found["traces"].get(f"{run}-tr")
        done = trace is not None and trace["status"] == "completed" and trace["end_time"]
        generation = found["generations"].get(f"{run}-g")
        stored = generation is not None and generation["prompt_tokens"] == 120
        return found if done and stored and f"{run}-sp" in found["spans"] else None

    found = eventually(tables, timeout_s=150)

    def dead_letters() -> dict[str, dict[str, Any]] | None:
        rows = _fetch(dsn, "SELECT * FROM dead_letters WHERE topic = 'gateway.maxim' "
                           "AND position($1::bytea IN raw) > 0", run.encode())  # fmt: skip
        by_raw = {bytes(r["raw"]).decode(): r for r in rows}
        return by_raw if all(line.text in by_raw for line in others) else None

    letters = eventually(dead_letters, timeout_s=60)
    # Every modelled line's data is in its entity's row.
    unkept: dict[str, list[str]] = {}
    for line in modelled:
        table, where = MODELLED[(line.entity, line.action)]
        node = line.entity_id if where == "self" else line.data["id"]
        missing = _stored(found[table].get(node), line.data)
        if missing:
            unkept[line.text] = missing
    assert unkept == {}
    generation = found["generations"][f"{run}-g"]
    assert generation["parent_id"] == f"{run}-sp" and generation["completion_tokens"] == 30
    # Every other line is a dead letter with its reason; nothing is missing or extra.
    for line in others:
        row = letters[line.text]
        assert row["reason"] == (f"maxim {line.entity}.{line.action}: not modelled by "
                                 "logflume; kept verbatim (project proj-a)")  # fmt: skip
        assert row["event_id"].startswith("mx_")
    assert len(modelled) + len(letters) == len(sent)
    assert set(letters) == {line.text for line in others}
    # The counter moved by the lines dead-lettered, per entity and action too.
    assert _counter(pipeline) - before == len(others)
    tool_results = sum(1 for line in others if line.entity == "tool_call"
                       and line.action == "result")  # fmt: skip
    assert _counter(pipeline, entity="tool_call", action="result", kind="not_modelled") == (
        tool_before + tool_results
    )  # fmt: skip
