"""save=false at the gateway, over in-memory twins: no route publishes a payload field of
a save=false log, nor of an update addressing one (tests/e2e/test_privacy.py does it
against the real pipeline and the shared PostgreSQL index)."""

from __future__ import annotations

import orjson

from gateway.unsaved import MemoryUnsavedIndex
from tests.payloads import log_payload

from .conftest import A, Env

MARK = "marker-unsaved-77"
PAYLOAD = log_payload(MARK)


def _published(env: Env) -> bytes:
    return orjson.dumps(env.sent())


def test_no_route_publishes_a_payload_of_a_save_false_log(env: Env):
    client = env.client
    log = {"path": "p/a", "reference_id": "r-1", "save": False, "prompt_tokens": 4, **PAYLOAD}
    created = client.post("/v5/prompts/log", headers=A, json=log)
    assert created.status_code == 200, created.text
    log_id = created.json()["id"]
    legacy_log = {"project": "p/a", "save": False, "reference_id": "r-2", **PAYLOAD}
    legacy = client.post("/logs", headers=A, json=[legacy_log])
    assert legacy.status_code == 200, legacy.text
    native = client.post("/v1/events", headers=A, json=[{
        "event_id": "evt-n1", "type": "log", "ts": "2026-01-01T00:00:00Z",
        "body": {"id": "data_n1", "save": False, **PAYLOAD}}])  # fmt: skip
    assert native.status_code == 202, native.text
    # Updates carry no flag: they are recognised by id or reference id.
    assert client.patch("/logs", params={"reference_id": "r-1"}, headers=A,
                        json={"output": MARK, "duration": 2.0}).status_code == 200  # fmt: skip
    assert client.patch(f"/logs/{log_id}", headers=A, json={"stdout": MARK}).status_code == 200
    by_id = {"event_id": "evt-n2", "type": "log_update", "ts": "2026-01-01T00:00:01Z",
             "body": {"id": "data_n1", "output": MARK}}  # fmt: skip
    assert client.post("/v1/events", headers=A, json=[by_id]).status_code == 202
    events = env.sent()
    assert len(events) == 6 and MARK.encode() not in _published(env)
    updates = [e["body"] for e in events if e["type"] == "log_update"]
    assert {"reference_id": "r-1", "duration": 2.0} in updates
    # A saved log and an update of another log keep theirs.
    client.post("/v5/prompts/log", headers=A, json={"path": "p/a", "reference_id": "r-3",
                                                    "output": MARK})  # fmt: skip
    client.patch("/logs", params={"reference_id": "r-9"}, headers=A, json={"output": MARK})
    assert _published(env).count(MARK.encode()) == 2


async def test_the_memory_index_answers_per_project():
    index = MemoryUnsavedIndex()
    await index.record("a", ["id:x", "ref:y"])
    assert await index.known("a", ["ref:y", "id:z"]) == {"ref:y"}
    assert await index.known("b", ["ref:y"]) == set()
