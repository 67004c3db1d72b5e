"""The official humanloop SDK reads back what logflume stores: ``logs.list`` pages through
every log of a Prompt exactly once and ends; ``prompts.get``, ``prompts.list`` and
``prompts.list_versions`` show the Prompt and versions derived from the logs; log ids of
any text round-trip."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from humanloop import Humanloop

from tests.e2e.conftest import Pipeline, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LOGS = 250


def _client(pipeline: Pipeline) -> Humanloop:
    return Humanloop(api_key=pipeline.key(), base_url=f"{pipeline.url}/v5")


def test_logs_list_pages_through_every_log_once_and_prompts_read_back(pipeline: Pipeline):
    client = _client(pipeline)
    path = f"reads/{uuid.uuid4().hex[:8]}/answer"
    # A version's id is a hash of its content alone, so another test logging the same
    # content to another prompt would own the version: a template of this run's own.
    kernels = [
        {"model": "gpt-4o", "provider": "openai", "temperature": t, "template": f"{path}: {{q}}"}
        for t in (0.1, 0.7)
    ]
    logged = [
        client.prompts.log(
            path=path,
            prompt=kernels[n % 2],
            output=f"answer {n}",
            prompt_tokens=10,
            output_tokens=n,
        )
        for n in range(LOGS)
    ]
    prompt_id = logged[0].prompt_id
    assert {log.prompt_id for log in logged} == {prompt_id}

    def all_stored() -> int | None:
        page = pipeline.get("/v5/logs", file_id=prompt_id, page=1, size=1).json()
        return page["total"] if page["total"] == LOGS else None

    eventually(all_stored, timeout_s=180)
    seen = [log.id for log in client.logs.list(file_id=prompt_id, size=10)]  # ends by itself
    assert len(seen) == LOGS and set(seen) == {log.id for log in logged}
    first = client.logs.list(file_id=prompt_id, size=7, page=2)
    assert (first.items is not None and len(first.items)) == 7
    beyond = pipeline.get("/v5/logs", file_id=prompt_id, page=LOGS, size=10).json()
    assert beyond["records"] == [] and beyond["total"] == LOGS
    # A filter the SDK sends narrows the pages: ids containing the first log's id.
    only = list(client.logs.list(file_id=prompt_id, id=logged[0].id, size=10))
    assert [log.id for log in only] == [logged[0].id]

    def versions_counted() -> list | None:
        found = client.prompts.list_versions(prompt_id).records
        counts = sorted(v.version_logs_count for v in found)
        return found if counts == [LOGS // 2, LOGS // 2] else None

    versions = eventually(versions_counted, timeout_s=60)
    assert {v.version_id for v in versions} == {log.version_id for log in logged}
    assert {v.temperature for v in versions} == {0.1, 0.7}
    assert all(v.total_logs_count == LOGS and v.path == path for v in versions)
    prompt = client.prompts.get(prompt_id)
    assert (prompt.id, prompt.path, prompt.name, prompt.model) == (
        prompt_id, path, "answer", "gpt-4o"
    )  # fmt: skip
    assert prompt.version_id == versions[-1].version_id
    pinned = client.prompts.get(prompt_id, version_id=versions[0].version_id)
    assert pinned.version_id == versions[0].version_id
    listed = [p for p in client.prompts.list(name=path, size=5) if p.id == prompt_id]
    assert len(listed) == 1 and listed[0].total_logs_count == LOGS


def test_log_ids_of_any_text_round_trip(pipeline: Pipeline):
    """Ids with spaces, ``/``, ``|`` and non-ASCII letters through the SDK's own calls; with
    ``#``, ``?`` and ``%``, which the SDK puts in its URL unencoded, percent-encoded."""
    client = _client(pipeline)
    run = uuid.uuid4().hex[:6]
    through_sdk = [f"ticket 4711/answer {run}", f"order|12 üñí {run}", f"tenant/abc/{run}"]
    encoded = [f"order#12|a {run}", f"what?x=1 {run}", f"100% {run}", "k" * 1018 + run]
    for log_id in through_sdk + encoded:
        answer = client.prompts.log(
            path="reads/ids", log_id=log_id, prompt={"model": "gpt-4o"}, output=log_id
        )
        assert answer.id == log_id

    def stored(log_id: str) -> dict | None:
        found = pipeline.get("/v5/logs/" + quote(log_id, safe=""))
        if found.status_code == 200 and found.json()["observability_status"] == "completed":
            return found.json()
        return None

    for log_id in through_sdk + encoded:
        log = eventually(lambda log_id=log_id: stored(log_id))
        assert (log["id"], log["output"]) == (log_id, log_id)
    for log_id in through_sdk:
        assert client.logs.get(log_id)["id"] == log_id
