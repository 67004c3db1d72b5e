"""The gateway's Flow, Tool and Evaluator routes over in-memory twins: what they publish
(a child's trace is its root's, however deep), what they answer, their 422s in the
caller's names, and updates by log id that reach a log keyed by its reference id."""

from __future__ import annotations

import orjson

from processors.entities import plain_event
from processors.outcome import Outcome
from processors.stage1 import merge_events
from producers.contract import parse_event

from .conftest import A, Env


def _entity(sent: dict) -> dict:
    outcome = Outcome()
    merge_events([plain_event(parse_event(orjson.dumps(sent)))], lambda key: None, outcome)
    (entity,) = [o.value for o in outcome.outputs]
    return entity


def test_a_flow_its_children_and_a_grandchild_share_the_flows_trace(env: Env):
    flow = env.client.post(
        "/v5/flows/log", headers=A,
        json={"path": "support/flow", "flow": {"attributes": {"v": 1}}, "log_status":
              "incomplete", "inputs": {"q": "?"}, "run_id": None},
    )  # fmt: skip
    assert flow.status_code == 200, flow.text
    answer = flow.json()
    flow_id = answer["id"]
    assert answer["flow_id"].startswith("fl_") and answer["version_id"].startswith("flv_")
    assert answer["log_status"] == "incomplete"
    nested = env.client.post("/v5/flows/log", headers=A, json={"path": "support/inner",
                             "trace_parent_id": flow_id, "log_status": "incomplete"})  # fmt: skip
    inner_id = nested.json()["id"]
    tool = env.client.post("/v5/tools/log", headers=A,
                           json={"path": "tools/lookup", "tool": {"function": {"name": "f"}},
                                 "output": "ok", "trace_parent_id": inner_id})  # fmt: skip
    assert tool.status_code == 200, tool.text
    assert tool.json()["tool_id"].startswith("tl_")
    sent = env.sent()
    assert [s["body"]["log_kind"] for s in sent] == ["flow", "flow", "tool"]
    assert "trace_id" not in sent[0]["body"]  # the root
    assert sent[1]["body"]["trace_id"] == flow_id
    assert (sent[2]["body"]["trace_id"], sent[2]["body"]["trace_parent_log_id"]) == (
        flow_id, inner_id
    )  # fmt: skip
    assert sent[2]["body"]["file"] == {"function": {"name": "f"}}
    # The answers' ids are the ones the pipeline computes.
    entity = _entity(sent[2])
    assert (entity["prompt_id"], entity["version_id"], entity["trace_root"]) == (
        tool.json()["tool_id"], tool.json()["version_id"], flow_id
    )  # fmt: skip


def test_an_evaluator_log_names_the_log_it_judges(env: Env):
    judged = env.client.post("/v5/prompts/log", headers=A,
                             json={"path": "p", "prompt": {"model": "gpt-4o"}})  # fmt: skip
    log_id = judged.json()["id"]
    answer = env.client.post(
        "/v5/evaluators/log", headers=A,
        json={"parent_id": log_id, "path": "evals/helpful", "judgment": 0.8,
              "spec": {"arguments_type": "target_required", "return_type": "number"},
              "marked_completed": True},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["parent_id"] == log_id
    assert answer.json()["evaluator_id"].startswith("ev_")
    body = env.sent()[-1]["body"]
    assert (body["log_kind"], body["parent_id"], body["judgment"]) == ("evaluator", log_id, 0.8)
    assert body["marked_completed"] is True and "trace_id" not in body


def test_422s_name_the_callers_fields(env: Env):
    bad_spec = env.client.post("/v5/evaluators/log", headers=A,
                               json={"parent_id": "data_1", "spec": "llm"})  # fmt: skip
    assert bad_spec.status_code == 422
    assert [d["loc"] for d in bad_spec.json()["detail"]] == [["body", "spec"]]
    no_parent = env.client.post("/v5/evaluators/log", headers=A, json={"judgment": True})
    assert no_parent.status_code == 422
    assert no_parent.json()["detail"][0]["loc"] == ["body", "parent_id"]
    bad_status = env.client.post("/v5/flows/log", headers=A, json={"log_status": "done"})
    assert bad_status.status_code == 422
    assert bad_status.json()["detail"][0]["loc"] == ["body", "log_status"]
    prompt_in_tool = env.client.post("/v5/tools/log", headers=A,
                                     json={"prompt": {"model": "gpt-4o"}})  # fmt: skip
    assert prompt_in_tool.status_code == 422
    assert prompt_in_tool.json()["detail"][0]["loc"] == ["body", "prompt"]
    for route in ("/v5/prompts/log", "/v5/flows/log"):  # looked up in PostgreSQL: no NUL
        nul = env.client.post(route, headers=A, params={"environment": "a\x00"}, json={})
        assert nul.status_code == 422 and nul.json()["detail"][0]["loc"] == [
            "query", "environment"
        ]  # fmt: skip
    kind_in_prompt = env.client.post("/v5/prompts/log", headers=A,
                                     json={"log_kind": "flow", "file": {}})  # fmt: skip
    assert kind_in_prompt.status_code == 422
    assert [d["loc"] for d in kind_in_prompt.json()["detail"]] == [
        ["body", "log_kind"], ["body", "file"]
    ]  # fmt: skip
    assert env.sent() == []


def test_updates_by_log_id_reach_a_log_keyed_by_its_reference_id(env: Env):
    reference = "ticket 4711/flow #a|ü"
    flow = env.client.post("/v5/flows/log", headers=A, json={"path": "f", "log_status":
                           "incomplete", "reference_id": reference})  # fmt: skip
    flow_id = flow.json()["id"]
    done = env.client.patch(f"/v5/flows/logs/{flow_id}", headers=A,
                            json={"log_status": "complete", "output": "done"})  # fmt: skip
    assert done.status_code == 200, done.text
    tool = env.client.post("/v5/tools/log", headers=A, json={"path": "t"}).json()["id"]
    tool_update = env.client.patch(f"/v5/tools/tl_x/log/{tool}", headers=A,
                                   json={"output": "late", "log_status": "complete"})  # fmt: skip
    assert tool_update.status_code == 200, tool_update.text
    by_reference = env.client.patch("/v5/logs", params={"reference_id": reference}, headers=A,
                                    json={"metadata": {"k": 1}})  # fmt: skip
    assert by_reference.status_code == 200
    _, update, _, tool_patch, ref_patch = env.sent()
    assert update["type"] == "log_update"
    assert update["body"] == {"id": flow_id, "reference_id": reference,
                              "log_status": "complete", "output": "done"}  # fmt: skip
    assert tool_patch["body"] == {"id": tool, "output": "late", "log_status": "complete"}
    assert ref_patch["body"] == {"reference_id": reference, "metadata": {"k": 1}}
