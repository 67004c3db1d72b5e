"""Humanloop's Flow, Tool and Evaluator logs with the official SDK against the whole
pipeline: a Flow log opened ``incomplete`` is the root of a trace; prompt logs, a nested
Flow and a Tool log join it through ``trace_parent_id``; an evaluator log judges a prompt
log; ``flows.update_log(log_status="complete")`` completes the trace. Then the trace tree
and its totals, every log read back with ``logs.get``, the judgment on its parent log, and
updates by reference id (ids with spaces, slashes, ``#``, ``|`` and non-ASCII letters).
``save=false`` and deletion cover these kinds as they cover prompt logs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from humanloop import Humanloop

from tests.e2e.conftest import Pipeline, eventually
from tests.payloads import log_payload, new_marker
from tests.scan import files_bytes, table_texts, topic_bytes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# gpt-4o at $2.50 / $10 and gpt-4o-mini at $0.15 / $0.60 per million tokens (genai-prices).
COST = 100 * 2.5e-6 + 50 * 10e-6 + 200 * 0.15e-6 + 20 * 0.6e-6


def _ref(client_options: dict[str, Any]) -> dict[str, Any]:
    """``request_options`` adding a reference id to the body (the SDK has no argument)."""
    return {"additional_body_parameters": client_options}


def _nodes(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    stack = list(tree["children"])
    while stack:
        node = stack.pop()
        found[node["id"]] = node
        stack += node["children"]
    return found


def test_a_flow_trace_with_prompt_tool_and_evaluator_logs(pipeline: Pipeline):
    hl = Humanloop(api_key=pipeline.key(), base_url=f"{pipeline.url}/v5")
    tag = uuid.uuid4().hex[:8]
    flow_ref = f"ticket {tag}/flow #1|ü"
    tool_ref = f"tool {tag}/lookup #2|é"
    judge_ref = f"judge {tag}/helpful #3|ß"
    flow = hl.flows.log(
        path=f"flows/{tag}/support", flow={"attributes": {"team": tag}},
        log_status="incomplete", inputs={"question": "Where is my parcel?"},
        request_options=_ref({"reference_id": flow_ref}),
    )  # fmt: skip
    assert flow.flow_id.startswith("fl_") and flow.log_status == "incomplete"
    answer = hl.prompts.log(
        path=f"flows/{tag}/answer", trace_parent_id=flow.id,
        prompt={"model": "gpt-4o", "provider": "openai", "template": f"{tag}: {{q}}"},
        messages=[{"role": "user", "content": "Where is my parcel?"}], output="On its way.",
        prompt_tokens=100, output_tokens=50,
    )  # fmt: skip
    summary = hl.prompts.log(
        path=f"flows/{tag}/summary", trace_parent_id=flow.id,
        prompt={"model": "gpt-4o-mini", "provider": "openai", "template": f"{tag} summary"},
        output="Parcel found.", prompt_tokens=200, output_tokens=20,
    )  # fmt: skip
    inner = hl.flows.log(path=f"flows/{tag}/lookup-flow", trace_parent_id=flow.id,
                         log_status="incomplete")  # fmt: skip
    tool = hl.tools.log(
        path=f"flows/{tag}/lookup", trace_parent_id=inner.id,
        tool={"function": {"name": "lookup", "description": "Find a parcel",
                           "parameters": {"type": "object"}}},
        inputs={"parcel": "P-1"}, output="in transit",
        request_options=_ref({"reference_id": tool_ref}),
    )  # fmt: skip
    assert tool.tool_id.startswith("tl_")
    judge = hl.evaluators.log(
        parent_id=answer.id, path=f"evals/{tag}/helpful", judgment=True,
        spec={"arguments_type": "target_free", "return_type": "boolean",
              "evaluator_type": "human"},
        request_options=_ref({"reference_id": judge_ref}),
    )  # fmt: skip
    assert judge.parent_id == answer.id

    def trace(status: str) -> dict[str, Any] | None:
        response = pipeline.get(f"/traces/{flow.id}")
        if response.status_code != 200:
            return None
        body = response.json()
        done = body["status"] == status and body["counts"].get("log") == 5
        return body if done and len(_nodes(body)) == 5 else None

    running = eventually(lambda: trace("running"))  # both flows are still incomplete
    assert running["totals"]["total_tokens"] == 370

    hl.flows.update_log(inner.id, log_status="complete")
    hl.flows.update_log(flow.id, log_status="complete", output="Delivered tomorrow.")
    headers = {"X-API-KEY": pipeline.key()}
    for reference, change in ((tool_ref, {"output": "delivered", "metadata": {"retry": 1}}),
                              (judge_ref, {"judgment": False})):  # fmt: skip
        patched = httpx.patch(f"{pipeline.url}/v5/logs", params={"reference_id": reference},
                              json=change, headers=headers)  # fmt: skip
        assert patched.status_code == 200, patched.text

    def completed() -> dict[str, Any] | None:
        tree = trace("completed")
        if tree is None:
            return None
        tool_log = hl.logs.get(tool.id)
        judged = hl.logs.get(judge.id)
        updated = tool_log.get("output") == "delivered" and judged.get("judgment") is False
        return tree if updated else None

    tree = eventually(completed)
    (root,) = tree["children"]
    assert (root["id"], root["kind"], root["log_kind"], root["status"]) == (
        flow.id, "log", "flow", "complete"
    )  # fmt: skip
    assert tree["name"] == f"flows/{tag}/support"
    children = {node["id"]: node for node in root["children"]}
    assert set(children) == {answer.id, summary.id, inner.id}
    assert [n["id"] for n in children[inner.id]["children"]] == [tool.id]
    assert children[inner.id]["children"][0]["log_kind"] == "tool"
    assert (children[answer.id]["usage"]["prompt_tokens"],
            children[answer.id]["usage"]["output_tokens"]) == (100, 50)  # fmt: skip
    totals = tree["totals"]
    assert (totals["prompt_tokens"], totals["output_tokens"], totals["total_tokens"]) == (
        300, 70, 370
    )  # fmt: skip
    assert totals["cost"] == pytest.approx(COST)
    assert root["subtree"]["cost"] == pytest.approx(COST)
    assert judge.id not in _nodes(tree)  # a judgment, not a member of the trace

    # Every log reads back with the SDK, its File under its kind.
    flow_log = hl.logs.get(flow.id)
    assert (flow_log["log_kind"], flow_log["log_status"], flow_log["output"]) == (
        "flow", "complete", "Delivered tomorrow."
    )  # fmt: skip
    assert flow_log["reference_id"] == flow_ref and flow_log["inputs"] == {
        "question": "Where is my parcel?"
    }
    assert flow_log["flow"]["id"] == flow.flow_id and flow_log["flow"]["attributes"] == {
        "team": tag
    }
    answer_log = hl.logs.get(answer.id)
    assert (answer_log["trace_id"], answer_log["trace_parent_id"]) == (flow.id, flow.id)
    assert answer_log["cost"] == pytest.approx(100 * 2.5e-6 + 50 * 10e-6)
    tool_log = hl.logs.get(tool.id)
    assert (tool_log["log_kind"], tool_log["trace_id"], tool_log["trace_parent_id"]) == (
        "tool", flow.id, inner.id
    )  # fmt: skip
    assert tool_log["tool"]["function"]["name"] == "lookup"
    assert tool_log["metadata"] == {"retry": 1} and tool_log["reference_id"] == tool_ref
    assert hl.logs.get(inner.id)["log_status"] == "complete"
    # The judgment is on the judged log, and is a log of its own.
    (judgment,) = answer_log["evaluator_logs"]
    assert (judgment["id"], judgment["judgment"], judgment["parent_id"]) == (
        judge.id, False, answer.id
    )  # fmt: skip
    assert judgment["evaluator"]["path"] == f"evals/{tag}/helpful"
    assert hl.logs.get(judge.id)["log_kind"] == "evaluator"
    # Reference ids round-trip through the read API.
    for reference, log_id in ((flow_ref, flow.id), (tool_ref, tool.id), (judge_ref, judge.id)):
        (record,) = pipeline.get("/v5/logs", reference_id=reference).json()["records"]
        assert (record["id"], record["reference_id"]) == (log_id, reference)


def test_save_false_flow_tool_and_evaluator_logs_keep_their_payloads_nowhere(
    pipeline: Pipeline,
) -> None:
    """As for prompt logs (tests/e2e/test_privacy.py): the creates and their updates (by
    id, by reference id, with the SDK's own update calls) carry a marker in every payload
    field; then it is in no topic, table or spool."""
    mark = new_marker("kinds")
    payload = log_payload(mark)
    sdk_fields = ("messages", "inputs", "output", "output_message", "provider_request",
                  "provider_response", "stdout")  # fmt: skip
    sdk_payload = {k: payload[k] for k in sdk_fields}
    hl = Humanloop(api_key=pipeline.key(), base_url=f"{pipeline.url}/v5")
    headers = {"X-API-KEY": pipeline.key()}
    tool_ref = f"private tool/{uuid.uuid4().hex[:8]} #|ö"
    flow = hl.flows.log(path="privacy/flow", save=False, log_status="incomplete",
                        **sdk_payload)  # fmt: skip
    tool = hl.tools.log(
        path="privacy/tool", save=False, trace_parent_id=flow.id, provider_latency=0.5,
        request_options=_ref({"reference_id": tool_ref}),
        **{k: v for k, v in sdk_payload.items() if k not in ("messages", "output_message")},
    )  # fmt: skip
    judge = hl.evaluators.log(
        parent_id=flow.id, path="privacy/judge", save=False, judgment="fine",
        **{k: v for k, v in sdk_payload.items() if k != "messages"},  # no messages argument
    )  # fmt: skip
    hl.flows.update_log(flow.id, log_status="complete", messages=payload["messages"],
                        inputs=payload["inputs"], output=mark)  # fmt: skip
    hl.tools.update(tool.tool_id, tool.id, output=mark, stdout=mark, provider_latency=1.5)
    for target, params in ((f"/v5/logs/{judge.id}", {}), ("/v5/logs", {"reference_id": tool_ref})):
        patched = httpx.patch(f"{pipeline.url}{target}", params=params, headers=headers,
                              json={"duration": 2.5, **payload})  # fmt: skip
        assert patched.status_code == 200, patched.text

    def stored(log_id: str, **expected: Any) -> dict[str, Any] | None:
        log = pipeline.get(f"/v5/logs/{log_id}").json()
        if log.get("observability_status") != "completed":
            return None
        return log if all(log.get(k) == v for k, v in expected.items()) else None

    logs = [
        eventually(lambda: stored(flow.id, log_status="complete")),
        eventually(lambda: stored(tool.id, provider_latency=1.5, duration=2.5)),
        eventually(lambda: stored(judge.id, judgment="fine", duration=2.5)),
    ]
    for log in logs:
        assert log["save"] is False
        assert (log["messages"], log["inputs"], log["output"], log["stdout"]) == (None,) * 4
    settings = pipeline.env.settings
    topics = asyncio.run(topic_bytes(settings))
    assert [name for name, data in topics.items() if mark.encode() in data] == []
    tables = asyncio.run(table_texts(settings.dsn))
    assert f"id:{flow.id}" in tables["unsaved_logs"] and tool.id in tables["gateway_logs"]
    assert [name for name, text in tables.items() if mark in text] == []
    assert mark.encode() not in files_bytes(pipeline.logs[0].parent)


async def test_deleting_a_flow_trace_and_a_judged_log_takes_their_logs_and_judgments(
    pipeline: Pipeline,
) -> None:
    """``DELETE /traces/{flow log id}`` erases the Flow log and every log in its trace;
    ``logs.delete`` of a judged log erases its evaluator logs with it (as its feedback);
    then no table holds their ids (the gateway's log index included), and what is kept
    stays."""
    hl = Humanloop(api_key=pipeline.key(), base_url=f"{pipeline.url}/v5")
    tag = uuid.uuid4().hex[:10]
    gone, kept = f"gone{tag}", f"kept{tag}"
    ids = {"flow": f"data_{gone}_flow", "child": f"data_{gone}_child", "tool": f"data_{gone}_tool",
           "judged": f"data_{gone}_judged", "judge": f"data_{gone}_judge",
           "kept": f"data_{kept}_log", "kept_judge": f"data_{kept}_judge"}  # fmt: skip
    prompt = {"model": "gpt-4o", "provider": "openai"}

    def send() -> None:
        hl.flows.log(log_id=ids["flow"], path=f"del/{kept}/flow", log_status="incomplete")
        hl.prompts.log(log_id=ids["child"], path=f"del/{kept}/p", prompt=prompt,
                       trace_parent_id=ids["flow"], prompt_tokens=10, output_tokens=1)  # fmt: skip
        tool_ref = _ref({"reference_id": f"ref {gone}/tool"})
        hl.tools.log(log_id=ids["tool"], path=f"del/{kept}/t", trace_parent_id=ids["flow"],
                     output="x", request_options=tool_ref)  # fmt: skip
        hl.prompts.log(log_id=ids["judged"], path=f"del/{kept}/p", prompt=prompt,
                       prompt_tokens=20)  # fmt: skip
        hl.evaluators.log(log_id=ids["judge"], parent_id=ids["judged"], path=f"del/{kept}/e",
                          judgment=True)  # fmt: skip
        hl.prompts.log(log_id=ids["kept"], path=f"del/{kept}/p", prompt=prompt, prompt_tokens=30)
        hl.evaluators.log(log_id=ids["kept_judge"], parent_id=ids["kept"],
                          path=f"del/{kept}/e", judgment=False)  # fmt: skip

    await asyncio.to_thread(send)
    dsn = pipeline.env.settings.dsn

    async def stored_ids() -> set[str]:
        conn = await asyncpg.connect(dsn, timeout=30)
        try:
            rows = await conn.fetch("SELECT id FROM logs WHERE id = ANY($1::text[])",
                                    list(ids.values()))  # fmt: skip
        finally:
            await conn.close()
        return {row["id"] for row in rows}

    async def until(probe: Callable[[], Awaitable[bool]]) -> None:
        deadline = time.monotonic() + 120
        while not await probe():
            assert time.monotonic() < deadline, "the pipeline did not reach the state in time"
            await asyncio.sleep(0.3)

    await until(lambda: _equal(stored_ids(), set(ids.values())))
    async with httpx.AsyncClient(base_url=pipeline.url,
                                 headers={"X-API-KEY": pipeline.key()}) as http:  # fmt: skip
        trace = await http.delete(f"/v5/traces/{ids['flow']}")
        assert trace.status_code == 200, trace.text
        assert trace.json()["deleted"] == {"log": 3, "trace": 1}
    await asyncio.to_thread(hl.logs.delete, id=[ids["judged"]])
    await until(lambda: _equal(stored_ids(), {ids["kept"], ids["kept_judge"]}))

    async def nothing_left() -> bool:
        tables = await table_texts(dsn)
        return not [t for t, text in tables.items() if gone in text and t != "dead_letters"]

    await until(nothing_left)
    kept_log = pipeline.get(f"/v5/logs/{ids['kept']}").json()
    assert [j["id"] for j in kept_log["evaluator_logs"]] == [ids["kept_judge"]]


async def _equal(found: Awaitable[set[str]], expected: set[str]) -> bool:
    return await found == expected
