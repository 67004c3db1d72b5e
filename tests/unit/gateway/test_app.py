"""The HTTP app over in-memory twins (no network): auth, 401/413/422, the translations, the
per-event batch answer, and version ids that agree with the pipeline's stage 1."""

from __future__ import annotations

import orjson
import pytest

from gateway.release import sweep
from processors.entities import plain_event
from processors.outcome import Outcome
from processors.stage1 import merge_events
from producers.contract import parse_event

from .conftest import A, Env


def test_every_route_but_health_needs_a_valid_key(env: Env):
    assert env.client.post("/v1/events", json=[]).status_code == 401
    assert env.client.post("/v1/events", json=[], headers={"X-API-KEY": "nope"}).status_code == 401
    assert (
        env.client.post("/v1/events", json=[], headers={"x-maxim-api-key": "key-b"}).status_code
        == 202
    )
    bearer = {"Authorization": "Bearer key-a"}
    assert env.client.get("/v5/logs/data_x", headers=bearer).status_code == 404
    assert env.client.get("/healthz").json()["status"] == "ok"


def test_prompts_log_answers_ids_that_the_pipeline_computes_the_same(env: Env):
    prompt = {"model": "gpt-4o", "provider": "openai", "temperature": 0.5,
              "template": [{"role": "system", "content": "be brief"}]}  # fmt: skip
    response = env.client.post(
        "/v5/prompts/log",
        headers=A,
        json={"path": "support/answer", "prompt": prompt, "messages": [{"role": "user",
              "content": "hi"}], "output": "yo", "prompt_tokens": 10, "output_tokens": 2,
              "trace_parent_id": "data_parent", "run_id": "ignored", "start_time":
              "2026-01-01T10:00:00"},  # naive: taken as UTC
    )  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    (sent,) = env.sent()
    assert sent["project"] == "proj-a" and sent["type"] == "log"
    assert sent["body"]["id"] == answer["id"] and answer["id"].startswith("data_")
    assert sent["body"]["trace_parent_log_id"] == "data_parent"
    assert sent["body"]["start_time"] == "2026-01-01T10:00:00+00:00"
    outcome = Outcome()
    merge_events([plain_event(parse_event(orjson.dumps(sent)))], lambda key: None, outcome)
    (entity,) = [o.value for o in outcome.outputs]
    assert (entity["prompt_id"], entity["version_id"]) == (
        answer["prompt_id"],
        answer["version_id"],
    )
    # Not stored yet, but accepted: pending rather than 404.
    view = env.client.get(f"/v5/logs/{answer['id']}", headers=A).json()
    assert view["observability_status"] == "pending" and view["id"] == answer["id"]
    assert (
        env.client.get(f"/logs/{answer['id']}", headers={"X-API-KEY": "key-b"}).status_code == 404
    )


def test_422_names_each_field_in_the_callers_terms(env: Env):
    response = env.client.post(
        "/v5/prompts/log", headers=A,
        json={"prompt_tokens": -1, "log_id": "bad\u0000id", "surprise": 1,
              "messages": [{"role": "x"}]},
    )  # fmt: skip
    assert response.status_code == 422
    detail = {tuple(d["loc"]): d["reason"] for d in response.json()["detail"]}
    assert ("body", "prompt_tokens") in detail and ("body", "surprise") in detail
    assert ("body", "log_id") in detail and ("body", "messages", 0, "role") in detail
    assert env.sent() == []
    bad = env.client.post("/logs", headers=A, json=[{"output": "ok"}, {"output_tokens": "x"}])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:3] == [
        "body",
        1,
        "output_tokens",
    ]
    assert env.client.post("/v5/prompts/log", headers=A, content=b"{nope").status_code == 422
    assert env.client.post("/v5/prompts/log", headers=A, json=[1]).status_code == 422


def test_413_over_the_event_or_body_limit(env: Env):
    big = {"output": "x" * 5000}
    assert env.client.post("/v5/prompts/log", headers=A, json=big).status_code == 413
    huge = [{"output": "x" * 1000}] * 100  # over the 64 KiB body limit
    assert env.client.post("/logs", headers=A, json=huge).status_code == 413
    assert env.sent() == []


NOT_OBJECT = {"field": "event", "reason": "must be a JSON object (an event envelope)"}
FEEDBACK = {"event_id": "e9", "type": "feedback", "ts": "2026-01-01T00:00:00Z",
            "body": {"id": "f9", "log_id": "data_9", "value": True}}  # fmt: skip


def test_native_batch_is_answered_per_event(env: Env):
    ok = {"event_id": "e1", "type": "feedback", "ts": "2026-01-01T00:00:00Z",
          "body": {"id": "f1", "log_id": "data_1", "value": True}}  # fmt: skip
    bad = {"event_id": "e2", "type": "log", "ts": "2026-01-01T00:00:00Z", "body": {"id": "d2",
           "prompt_tokens": -5}}  # fmt: skip
    foreign = {**ok, "event_id": "e3", "project": "proj-b"}
    response = env.client.post("/v1/events", headers=A, json=[ok, bad, foreign])
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected"]
    assert results[1]["errors"] == [
        {"field": "body.prompt_tokens", "reason": "Input should be greater than or equal to 0"}
    ]
    assert results[2]["errors"][0]["field"] == "project"
    assert [e["event_id"] for e in env.sent()] == ["e1"]
    assert env.client.post("/v1/events", headers=A, json=[bad]).status_code == 422
    huge = {**ok, "event_id": "e4", "body": {**ok["body"], "metadata": {"x": "y" * 5000}}}
    too_large = env.client.post("/v1/events", headers=A, json=[huge])
    assert too_large.status_code == 413 and too_large.json()["results"][0]["errors"][0][
        "field"
    ] == ("event")


@pytest.mark.parametrize(
    ("body", "status", "errors"),
    [
        (b"[1]", 422, [[NOT_OBJECT]]),
        (b'[null, "x"]', 422, [[NOT_OBJECT], [NOT_OBJECT]]),
        (b"[1, %s]" % orjson.dumps(FEEDBACK), 207, [[NOT_OBJECT], []]),
        (b"42", 422, None),
        (b'"x"', 422, None),
    ],
)  # fmt: skip
def test_a_batch_item_that_is_not_an_object_is_a_422_naming_it(
    env: Env, body: bytes, status: int, errors: list | None
):
    """It used to be answered 413, as if it were over the size limit."""
    answer = env.client.post("/v1/events", headers=A, content=body)
    assert answer.status_code == status, answer.text
    if errors is None:  # neither an object nor an array
        assert answer.json()["detail"][0]["field"] == "body"
    else:
        assert [r["errors"] for r in answer.json()["results"]] == errors


def test_update_by_reference_and_the_older_logs_endpoint(env: Env):
    patch = env.client.patch("/logs", params={"reference_id": "ref-1"}, headers=A,
                             json={"output": "late", "error": None})  # fmt: skip
    assert patch.status_code == 200 and patch.json()["observability_status"] == "pending"
    created = env.client.post("/logs", headers=A, json={"reference_id": "ref-1", "project":
                              "folder/prompt", "config": {"model": "gpt-4o"},
                              "feedback": [{"type": "rating", "value": "good"}]})  # fmt: skip
    assert created.status_code == 200, created.text
    update, log, feedback = env.sent()
    assert update["type"] == "log_update" and update["body"] == {
        "reference_id": "ref-1",
        "output": "late",
        "error": None,
    }
    assert log["body"]["path"] == "folder/prompt" and log["body"]["prompt"] == {"model": "gpt-4o"}
    assert feedback["body"]["reference_id"] == "ref-1" and feedback["body"]["value"] == "good"
    prompt_patch = env.client.patch("/v5/prompts/pr_1/log/data_9", headers=A, json={"output": "x"})
    assert prompt_patch.json()["id"] == "data_9"


def test_maxim_lines_are_translated_and_nodes_remembered(env: Env):
    repo = env.client.get("/api/sdk/v3/log-repositories", params={"loggerId": "r"},
                          headers={"x-maxim-api-key": "key-a"})  # fmt: skip
    assert repo.status_code == 200 and "error" not in repo.json()
    headers = {"x-maxim-api-key": "key-a"}
    create = "\n".join([
        'trace{id=t1,action=create,data={"name": "n"}}',
        'trace{id=t1,action=add-span,data={"id": "s1"}}',
        'span{id=s1,action=add-generation,data={"id": "g1", "provider": "openai", '
        '"model": "gpt-4o", "messages": []}}',
    ])  # fmt: skip
    first = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=create, headers=headers)
    assert first.status_code == 200 and first.json()["data"]["accepted"] == 3
    later = ('generation{id=g1,action=result,data={"result": {"id": "c", "created": 1, '
             '"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}}}\n'
             'span{id=unknown,action=end,data={}}')  # fmt: skip
    second = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=later, headers=headers)
    data = second.json()["data"]
    assert data["accepted"] == 1 and data["held"] == 1 and data["rejected"] == []
    result = env.sent()[-1]
    assert result["type"] == "generation_result" and result["body"]["trace_id"] == "t1"
    # Another project does not see this project's nodes.
    other = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=later,
                            headers={"x-maxim-api-key": "key-b"})  # fmt: skip
    assert other.json()["data"]["accepted"] == 0


_CREATE_G1 = "\n".join([
    'trace{id=t1,action=create,data={"name": "n"}}',
    'trace{id=t1,action=add-span,data={"id": "s1"}}',
    'span{id=s1,action=add-generation,data={"id": "g1", "provider": "openai", '
    '"model": "gpt-4o", "messages": []}}',
])  # fmt: skip
_RESULT_G1 = "\n".join([
    'generation{id=g1,action=result,data={"result": {"id": "c", "created": 1, "choices": [], '
    '"usage": {"prompt_tokens": 1, "completion_tokens": 2}}}}',
    'generation{id=g1,action=end,data={"endTimestamp": "2026-01-01T00:00:05Z"}}',
])  # fmt: skip


def test_a_result_before_its_generation_is_held_then_published_as_if_in_order(env: Env):
    headers = {"x-maxim-api-key": "key-a"}
    early = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=_RESULT_G1,
                            headers=headers)  # fmt: skip
    assert early.status_code == 200
    assert early.json()["data"] | {"delivery": None} == {
        "repository": "r", "accepted": 0, "held": 2, "released": 0, "delivery": None,
        "dead_lettered": {}, "rejected": [],
    }  # fmt: skip
    assert env.sent() == [] and len(env.held.lines) == 2
    # A node of another project with the same id does not release this project's lines.
    other = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=_CREATE_G1,
                            headers={"x-maxim-api-key": "key-b"})  # fmt: skip
    assert other.json()["data"]["released"] == 0 and len(env.held.lines) == 2
    late = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=_CREATE_G1,
                           headers=headers)  # fmt: skip
    assert late.json()["data"]["accepted"] == 3 and late.json()["data"]["released"] == 2
    assert env.held.lines == {}
    (result,) = [e for e in env.sent() if e["type"] == "generation_result"]
    assert result["project"] == "proj-a" and result["body"]["trace_id"] == "t1"
    assert result["body"]["end_time"] == "2026-01-01T00:00:05Z"
    # Same event id and ts as when the result arrives after its generation.
    in_order = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=_RESULT_G1,
                               headers=headers)  # fmt: skip
    assert in_order.json()["data"]["accepted"] == 1
    again = env.sent()[-1]
    assert again["event_id"] == result["event_id"] and again["body"] == result["body"]


def test_a_held_line_that_would_be_invalid_is_refused_not_held(env: Env):
    bad = 'generation{id=g7,action=result,data={"result": {"usage": {"prompt_tokens": -5}}}}'
    answer = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=bad,
                             headers={"x-maxim-api-key": "key-a"})  # fmt: skip
    data = answer.json()["data"]
    assert data["held"] == 0 and data["rejected"][0]["line"] == 0 and env.held.lines == {}


def test_a_failed_release_keeps_the_lines_held_for_the_sweeper(
    env: Env, monkeypatch: pytest.MonkeyPatch
):
    headers = {"x-maxim-api-key": "key-a"}
    env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=_RESULT_G1, headers=headers)
    calls = 0
    ingest = env.client.app.state.gateway.ingest  # type: ignore[attr-defined]
    publish = ingest.publish

    async def failing_second_publish(encoded: list) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:  # the release, after the request's own events
            raise RuntimeError("kafka and the spool are both gone")
        return await publish(encoded)

    monkeypatch.setattr(ingest, "publish", failing_second_publish)
    answer = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=_CREATE_G1,
                             headers=headers)  # fmt: skip
    assert answer.status_code == 200 and answer.json()["data"]["released"] == 0
    assert len(env.held.lines) == 2 and "generation_result" not in _types(env.sent())
    gateway = env.client.app.state.gateway  # type: ignore[attr-defined]
    assert env.client.portal.call(lambda: sweep(gateway, ttl_s=60)) == (2, 0)  # type: ignore[union-attr]
    assert env.held.lines == {} and "generation_result" in _types(env.sent())


def _types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_deletions_publish_one_delete_event_per_entity(env: Env):
    answer = env.client.delete("/v5/logs", params={"id": ["data_1", "data_2"]}, headers=A)
    assert answer.status_code == 200, answer.text
    assert answer.json()["deleted"] == {"log": 2}
    by_ref = env.client.delete("/logs", params={"reference_id": "r-1"}, headers=A)
    assert by_ref.json()["deleted"] == {"log": 1}
    trace = env.client.delete("/traces/t-1", headers=A)  # without a store: the node only
    assert trace.json()["deleted"] == {"trace": 1}
    assert env.client.delete("/logs", headers=A).status_code == 422
    assert env.client.delete("/logs/a%00b", headers=A).status_code == 422  # NUL in the id
    bodies = [e["body"] for e in env.sent() if e["type"] == "delete"]
    assert bodies == [
        {"kind": "log", "id": "data_1"},
        {"kind": "log", "id": "data_2"},
        {"kind": "log", "reference_id": "r-1"},
        {"kind": "trace", "id": "t-1"},
    ]


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("POST", "/v5/prompts/log?environment=a%00b", "query.environment"),
        ("GET", "/v5/prompts?name=a%00b", "query.name"),
        ("GET", "/v5/logs?page=1&search=a%00b", "query.search"),
        ("GET", "/v5/logs?page=1&metadata_search=a%00b", "query.metadata_search"),
        ("GET", "/v5/logs?page=1&id=ok&id=a%00b", "query.id.1"),
        ("DELETE", "/v5/logs?id=a%00b", "query.id.0"),
        ("DELETE", "/logs?reference_id=a%00b", "query.reference_id.0"),
    ],
)
def test_a_nul_in_query_text_is_a_422_naming_the_parameter(
    env: Env, method: str, url: str, field: str
):
    """PostgreSQL's text cannot hold NUL: it used to reach a query and answer 500
    (found by schemathesis in tests/integration/gateway/test_openapi_fuzz.py)."""
    answer = env.client.request(method, url, headers=A, json={"path": "a/b", "output": "x"})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["detail"]] == [field]
