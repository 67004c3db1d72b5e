"""save=false in the SDK: payloads are dropped at the call, for the create and for the
updates of a log this client created unsaved (tests/integration covers the real broker)."""

from __future__ import annotations

import orjson

from producers.contract import PAYLOAD_FIELDS
from producers.sdk import MemoryTransport
from producers.sdk.recent import Recent
from producers.sdk.unsaved import UnsavedLogs
from tests.payloads import log_payload

from .conftest import MakeClient

SECRET = "secret-4711"
PAYLOAD = log_payload(SECRET)


def test_every_payload_field_of_the_contract_is_exercised():
    maxim = {"input", "result", "args", "query", "documents"}  # fields of Maxim's bodies
    log_payload = PAYLOAD_FIELDS - maxim
    assert set(PAYLOAD) == log_payload


def test_a_save_false_create_and_its_updates_lose_their_payload_fields():
    unsaved = UnsavedLogs(capacity=10, ttl_s=60)
    create = unsaved.screen("log", {"id": "data_1", "reference_id": "r1", "save": False,
                                    "prompt_tokens": 3, **PAYLOAD})  # fmt: skip
    assert create == {"id": "data_1", "reference_id": "r1", "save": False, "prompt_tokens": 3}
    by_ref = unsaved.screen("log_update", {"reference_id": "r1", "duration": 1.0, **PAYLOAD})
    by_id = unsaved.screen("log_update", {"id": "data_1", **PAYLOAD})
    assert by_ref == {"reference_id": "r1", "duration": 1.0} and by_id == {"id": "data_1"}
    again = unsaved.screen("log", {"id": "data_2", "reference_id": "r1", **PAYLOAD})
    assert again == {"id": "data_2", "reference_id": "r1"}  # save=false is sticky
    other = {"reference_id": "r2", **PAYLOAD}
    assert unsaved.screen("log_update", other) == other


def test_remembered_logs_are_bounded_and_expire():
    now = [0.0]
    recent: Recent[str, bool] = Recent(2, 10.0, clock=lambda: now[0])
    for key in ("a", "b", "c"):
        recent.put(key, True)
    assert "a" not in recent and "b" in recent and "c" in recent and len(recent) == 2
    now[0] = 10.5
    assert "b" not in recent and len(recent) == 1
    assert "a" not in Recent(0, 10.0)


def test_the_client_queues_no_payload_of_a_save_false_log(make_client: MakeClient):
    transport = MemoryTransport()
    client = make_client(transport)
    client.log(reference_id="t-1", save=False, prompt_tokens=5, **PAYLOAD)
    client.update_log(reference_id="t-1", output=SECRET, provider_latency=0.5)
    client.log(reference_id="t-2", output="kept")
    assert client.flush(5)
    events = transport.bodies()
    assert SECRET not in orjson.dumps(events).decode()
    bodies = {e["type"]: e["body"] for e in events if e["body"].get("reference_id") == "t-1"}
    assert bodies["log"]["prompt_tokens"] == 5 and bodies["log"]["save"] is False
    assert bodies["log_update"] == {"reference_id": "t-1", "provider_latency": 0.5}
    assert any(e["body"].get("output") == "kept" for e in events)
