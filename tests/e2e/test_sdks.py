"""The official SDKs, unchanged but for base URL and API key, against the whole pipeline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from humanloop import Humanloop
from maxim import Maxim

from tests.e2e.conftest import Pipeline, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _print_pipeline_logs_on_failure(request: pytest.FixtureRequest, pipeline: Pipeline
                                    ) -> Iterator[None]:  # fmt: skip
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(pipeline.tails())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def test_humanloop_log_reads_back_completed_with_tokens_and_cost(pipeline: Pipeline):
    client = Humanloop(api_key=pipeline.key(), base_url=f"{pipeline.url}/v5")
    logged = client.prompts.log(
        path="support/answer",
        prompt={"model": "gpt-4o", "provider": "openai", "temperature": 0.2,
                "template": [{"role": "system", "content": "Answer briefly."}]},
        messages=[{"role": "user", "content": "Where is my parcel?"}],
        output="On its way.",
        prompt_tokens=100,
        output_tokens=50,
        metadata={"ticket": "T-1"},
    )  # fmt: skip
    assert logged.id.startswith("data_") and logged.version_id.startswith("prv_")
    # The SDK parses its LogResponse union of forward references into a plain dict.
    first = client.logs.get(logged.id)
    assert first["observability_status"] in ("pending", "completed")

    def completed() -> dict | None:
        log = client.logs.get(logged.id)
        return log if log["observability_status"] == "completed" else None

    log = eventually(completed)
    assert (log["prompt_tokens"], log["output_tokens"], log["tokens"]) == (100, 50, 150)
    # gpt-4o at $2.50 / $10 per million tokens (genai-prices): computed by the pipeline.
    assert log["prompt_cost"] == pytest.approx(100 * 2.5e-6)
    assert log["output_cost"] == pytest.approx(50 * 10e-6)
    assert log["cost_source"] == "computed"
    assert (log["prompt_id"], log["version_id"]) == (logged.prompt_id, logged.version_id)
    assert log["metadata"] == {"ticket": "T-1"} and log["output"] == "On its way."
    # Another project's key does not see it.
    assert pipeline.get(f"/v5/logs/{logged.id}", project="proj-b").status_code == 404


def _completion(prompt: int, completion: int, model: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }  # fmt: skip


def test_maxim_trace_with_a_span_and_two_generations_reads_back_as_a_tree(
    pipeline: Pipeline, maxim: Maxim
):
    logger = maxim.logger({"id": "support-bot", "auto_flush": False})
    trace_id = f"tr-{uuid.uuid4().hex[:12]}"
    trace = logger.trace({"id": trace_id, "name": "checkout", "session_id": "sess-e2e"})
    span = trace.span({"id": f"{trace_id}-plan", "name": "plan"})
    first = span.generation({"id": f"{trace_id}-g1", "provider": "openai", "model": "gpt-4o",
                             "messages": [{"role": "user", "content": "a"}]})  # fmt: skip
    second = span.generation({"id": f"{trace_id}-g2", "provider": "openai",
                              "model": "gpt-4o-mini",
                              "messages": [{"role": "user", "content": "b"}]})  # fmt: skip
    first.result(_completion(100, 50, "gpt-4o"))
    logger.flush()  # results can come in a later request than their generation
    second.result(_completion(200, 20, "gpt-4o-mini"))
    span.end()
    trace.end()
    logger.flush()

    def assembled() -> dict | None:
        response = pipeline.get(f"/traces/{trace_id}")
        if response.status_code != 200:
            return None
        body = response.json()
        done = body["status"] == "completed" and body["totals"]["total_tokens"] == 370
        return body if done and body["children"] else None

    tree = eventually(assembled)
    assert tree["name"] == "checkout" and tree["session_id"] == "sess-e2e"
    (plan,) = tree["children"]
    assert (plan["kind"], plan["id"], plan["name"]) == ("span", f"{trace_id}-plan", "plan")
    generations = {g["id"]: g for g in plan["children"]}
    g1, g2 = generations[f"{trace_id}-g1"], generations[f"{trace_id}-g2"]
    assert (g1["usage"]["prompt_tokens"], g1["usage"]["output_tokens"]) == (100, 50)
    assert (g2["usage"]["prompt_tokens"], g2["usage"]["output_tokens"]) == (200, 20)
    expected_cost = 100 * 2.5e-6 + 50 * 10e-6 + 200 * 0.15e-6 + 20 * 0.6e-6
    assert g1["usage"]["cost"] + g2["usage"]["cost"] == pytest.approx(expected_cost)
    assert plan["subtree"]["total_tokens"] == 370
    assert plan["subtree"]["cost"] == pytest.approx(expected_cost)
    totals = tree["totals"]
    assert (totals["prompt_tokens"], totals["output_tokens"], totals["total_tokens"]) == (
        300, 70, 370
    )  # fmt: skip
    assert totals["cost"] == pytest.approx(expected_cost)
    assert tree["counts"] == {"generation": 2, "span": 1, "trace": 1}
    session = pipeline.get("/sessions/sess-e2e").json()
    assert trace_id in {t["id"] for t in session["traces"]}


def test_an_update_by_reference_sent_before_the_log_ends_in_the_merged_log(pipeline: Pipeline):
    headers = {"X-API-KEY": pipeline.key()}
    reference = f"ticket-{uuid.uuid4().hex[:10]}"
    update = httpx.patch(f"{pipeline.url}/logs", params={"reference_id": reference},
                         json={"output": "final answer", "duration": 1.5,
                               "metadata": {"reviewed": True}}, headers=headers)  # fmt: skip
    assert update.status_code == 200 and update.json()["observability_status"] == "pending"
    time.sleep(0.5)  # the update is processed alone first: it waits for its log
    created = httpx.post(f"{pipeline.url}/logs", json={
        "reference_id": reference, "project": "support/answer", "config": {"model": "gpt-4o"},
        "messages": [{"role": "user", "content": "hello"}], "prompt_tokens": 12,
        "output_tokens": 3, "metadata": {"channel": "email"},
    }, headers=headers)  # fmt: skip
    assert created.status_code == 200, created.text
    log_id = created.json()["id"]

    def merged() -> dict | None:
        page = pipeline.get("/logs", reference_id=reference).json()
        records = [r for r in page["records"] if r["observability_status"] == "completed"]
        return records[0] if records and records[0].get("output") else None

    log = eventually(merged)
    assert log["id"] == log_id and log["reference_id"] == reference
    assert (log["output"], log["duration"], log["tokens"]) == ("final answer", 1.5, 15)
    assert log["metadata"] == {"channel": "email", "reviewed": True}
    assert log["messages"][0]["content"] == "hello"
    assert pipeline.get(f"/logs/{log_id}").json()["output"] == "final answer"
