"""save=false means stored nowhere, against the whole pipeline (SDK and gateway -> Kafka ->
Faust workers -> sink -> PostgreSQL, then ``logflume export``).

Every path sends save=false logs and, after them, updates by reference id and by id whose
payload fields hold a unique marker; then every topic of the deployment (raw, entities,
rollups, groups, dead letters, the processors' changelogs), the SDK's and the gateway's
spool files, every PostgreSQL table and an export archive are searched for the marker.
A producer that is not logflume's writes the payload into the raw topic itself: there it
stays (until retention), and nowhere else. The Maxim contract has no save flag (a trace,
span or generation cannot be unsaved), so there is no Maxim case.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from humanloop import Humanloop

from kernel.settings import Settings
from producers.contract import pack_record, partition_for
from producers.sdk import Client
from tests.e2e.conftest import Pipeline, eventually
from tests.integration.replay.history import logflume_ok
from tests.payloads import log_payload, new_marker
from tests.scan import archive_text, files_bytes, table_texts, topic_bytes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _stored(pipeline: Pipeline, log_id: str, **expected: Any) -> dict | None:
    """The log as stored once it has the ``expected`` values (None until then)."""
    log = pipeline.get(f"/logs/{log_id}").json()
    if log.get("observability_status") != "completed":
        return None
    return log if all(log.get(k) == v for k, v in expected.items()) else None


def _by_reference(pipeline: Pipeline, reference_id: str, **expected: Any) -> dict | None:
    for log in pipeline.get("/logs", reference_id=reference_id).json()["records"]:
        if log["observability_status"] == "completed" and all(
            log.get(k) == v for k, v in expected.items()
        ):
            return log
    return None


def _export(settings: Settings, tmp: Path) -> str:
    archive = tmp / "history.jsonl.zst"
    logflume_ok(settings, tmp / "home", "export", "--since", "earliest", "-o", str(archive))
    return archive_text(archive)


def _sdk(settings: Settings, spool: Path, **overrides: Any) -> Client:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "topic": settings.topics.events,
        "project": "proj-a",
        "spool_dir": spool,
        "flush_interval_ms": 5,
        **overrides,
    }
    return Client(**options)


def test_no_edge_path_stores_a_save_false_payload_anywhere(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    mark = new_marker("edge")
    payload = log_payload(mark)
    settings = pipeline.env.settings
    headers = {"X-API-KEY": pipeline.key()}
    refs = {name: f"{name}-{uuid.uuid4().hex[:10]}" for name in ("sdk1", "sdk2", "v5")}

    # SDK, broker unreachable: the create and its update go to the spool.
    spool = tmp_path / "sdk-spool"
    offline = _sdk(settings, spool, bootstrap_servers="127.0.0.1:1", send_timeout_s=1.0)
    offline.log(path="privacy/sdk", reference_id=refs["sdk1"], save=False, prompt_tokens=7,
                output_tokens=3, **payload)  # fmt: skip
    offline.update_log(reference_id=refs["sdk1"], duration=1.25, **payload)
    offline.close(timeout=1.0)
    spooled = files_bytes(spool)
    assert refs["sdk1"].encode() in spooled and mark.encode() not in spooled
    # SDK, broker up: it re-sends the spool, then a create and an update of its own.
    with _sdk(settings, spool) as online:
        online.log(path="privacy/sdk", reference_id=refs["sdk2"], save=False, prompt_tokens=5,
                   **payload)  # fmt: skip
        online.update_log(reference_id=refs["sdk2"], duration=2.5, **payload)
        assert online.flush(30)

    # POST /v5/prompts/log (the official SDK, and plain HTTP with a reference id).
    humanloop = Humanloop(api_key=pipeline.key(), base_url=f"{pipeline.url}/v5")
    official = humanloop.prompts.log(
        path="privacy/v5", prompt={"model": "gpt-4o"}, save=False, prompt_tokens=11,
        messages=payload["messages"], inputs=payload["inputs"], output=mark,
        provider_request=payload["provider_request"], stdout=mark,
    )  # fmt: skip
    v5 = httpx.post(f"{pipeline.url}/v5/prompts/log", headers=headers, json={
        "path": "privacy/v5", "reference_id": refs["v5"], "save": False, **payload})  # fmt: skip
    assert v5.status_code == 200, v5.text
    by_ref = httpx.patch(f"{pipeline.url}/logs", params={"reference_id": refs["v5"]},
                         headers=headers, json={"duration": 3.5, **payload})  # fmt: skip
    assert by_ref.status_code == 200, by_ref.text
    # POST /logs (older), then an update by id (a log with a reference id is one entity
    # under that reference: stage 1 merges updates that name it).
    legacy = httpx.post(f"{pipeline.url}/logs", headers=headers, json=[{
        "project": "privacy/logs", "save": False,
        "config": {"model": "gpt-4o"}, **payload}])  # fmt: skip
    assert legacy.status_code == 200, legacy.text
    legacy_id = legacy.json()[0]["id"]
    by_id = httpx.patch(f"{pipeline.url}/logs/{legacy_id}", headers=headers,
                        json={"duration": 4.5, **payload})  # fmt: skip
    assert by_id.status_code == 200, by_id.text
    # POST /v1/events: a create and an update by id.
    native_id = f"data_{uuid.uuid4().hex}"
    native = httpx.post(f"{pipeline.url}/v1/events", headers=headers, json=[
        {"event_id": f"evt-{uuid.uuid4().hex}", "type": "log", "ts": "2026-12-01T00:00:00Z",
         "body": {"id": native_id, "path": "privacy/native", "save": False, **payload}},
        {"event_id": f"evt-{uuid.uuid4().hex}", "type": "log_update",
         "ts": "2026-12-01T00:00:01Z", "body": {"id": native_id, "duration": 5.5, **payload}},
    ])  # fmt: skip
    assert native.status_code == 202, native.text

    # Stored, updates merged (their non-payload fields), payloads empty.
    stored = [
        eventually(lambda: _by_reference(pipeline, refs["sdk1"], duration=1.25)),
        eventually(lambda: _by_reference(pipeline, refs["sdk2"], duration=2.5)),
        eventually(lambda: _stored(pipeline, official.id, prompt_tokens=11)),
        eventually(lambda: _by_reference(pipeline, refs["v5"], duration=3.5)),
        eventually(lambda: _stored(pipeline, legacy_id, duration=4.5)),
        eventually(lambda: _stored(pipeline, native_id, duration=5.5)),
    ]
    assert stored[0]["prompt_tokens"] == 7 and stored[0]["output_tokens"] == 3
    for log in stored:
        assert log["messages"] is None and log["output"] is None and log["inputs"] is None

    archive = _export(settings, tmp_path)
    assert refs["v5"] in archive and mark not in archive
    topics = asyncio.run(topic_bytes(settings))
    assert settings.topics.events in topics and any("changelog" in t for t in topics)
    assert refs["sdk2"].encode() in topics[settings.topics.events]
    assert [name for name, data in topics.items() if mark.encode() in data] == []
    tables = asyncio.run(table_texts(settings.dsn))
    assert {"logs", "dead_letters", "unsaved_logs"} <= set(tables)
    assert legacy_id in tables["logs"] and f"id:{legacy_id}" in tables["unsaved_logs"]
    assert [name for name, text in tables.items() if mark in text] == []
    assert mark.encode() not in files_bytes(spool) + files_bytes(pipeline.logs[0].parent)


async def _publish_raw(settings: Settings, events: list[dict[str, Any]]) -> None:
    """As a producer that is not logflume's would: straight to the raw topic, one record
    per event (in order)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for event in events:
            body = event["body"]
            key = f"{event['project']}/{body.get('reference_id') or body['id']}".encode()
            partition = partition_for(key, settings.partitions)
            value = pack_record([orjson.dumps(event)])
            await producer.send_and_wait(settings.topics.events, value, key=key,
                                         partition=partition)  # fmt: skip
    finally:
        await producer.stop()


def test_a_foreign_producer_s_save_false_payload_stays_in_the_raw_topic_only(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    mark = new_marker("foreign")
    payload = log_payload(mark)
    settings = pipeline.env.settings
    ref = f"foreign-{uuid.uuid4().hex[:10]}"
    ids = [f"evt-{uuid.uuid4().hex}" for _ in range(4)]

    def event(n: int, etype: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"event_id": ids[n], "type": etype, "ts": f"2026-12-01T00:00:0{n}Z",
                "project": "proj-a", "body": body}  # fmt: skip

    asyncio.run(_publish_raw(settings, [
        event(0, "log", {"id": f"data_{uuid.uuid4().hex}", "reference_id": ref,
                         "path": "privacy/foreign", "save": False, **payload}),
        event(1, "log_update", {"reference_id": ref, "duration": 6.5, **payload}),
        # Invalid: dead letters, one saying save=false, one updating the unsaved log.
        event(2, "log", {"id": f"data_{uuid.uuid4().hex}", "save": False, "prompt_tokens": -1,
                         **payload}),
        event(3, "log_update", {"reference_id": ref, "duration": -1, **payload}),
    ]))  # fmt: skip
    eventually(lambda: _by_reference(pipeline, ref, duration=6.5))

    def dead_letters() -> str | None:
        text = asyncio.run(table_texts(settings.dsn))["dead_letters"]
        return text if ids[2] in text and ids[3] in text else None

    eventually(dead_letters)
    topics = asyncio.run(topic_bytes(settings))
    assert mark.encode() in topics[settings.topics.events]  # the documented limit
    assert ids[2].encode() in topics[settings.topics.deadletter]
    assert [name for name, data in topics.items()
            if mark.encode() in data and name != settings.topics.events] == []  # fmt: skip
    tables = asyncio.run(table_texts(settings.dsn))
    assert [name for name, text in tables.items() if mark in text] == []
    archive = _export(settings, tmp_path)
    assert ref in archive and ids[1] in archive and mark not in archive
