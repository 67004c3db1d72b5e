"""Maxim lines that become no event are kept as dead letters before the gateway answers 2xx
(in-memory twins; the real sink's and Kafka's side is tests/e2e/test_maxim_kept.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from gateway import Components, GatewaySettings, create_app
from gateway.nodes import MemoryNodeIndex
from kernel.settings import Settings
from producers.sdk import MemoryTransport, Spool
from sinks.batch import Batch, DeadLetterRow
from tests.integration.pipeline_env import metric
from tests.unit.gateway.conftest import DictKeys, Env

MAXIM = {"x-maxim-api-key": "key-a"}
LINES = "\n".join([
    'trace{id=t1,action=create,data={"name": "n"}}',
    'trace{id=t1,action=add-tool-call,data={"id": "tc1", "name": "search", "args": "{}"}}',
    'tool_call{id=tc1,action=result,data={"result": "found"}}',
    'trace{id=t1,action=add-feedback,data={"score": 1, "comment": "good"}}',
    'tool_call{id=tc1,action=evaluate,data={"with": "evaluators", "evaluators": ["x"]}}',
    'trace{id=t1,action=add-span,data={"name": "no id"}}',
    "not a commit line",
])  # fmt: skip


def _post(client: TestClient, text: str = LINES) -> dict:
    return client.post("/api/sdk/v3/log", params={"id": "r"}, content=text, headers=MAXIM).json()


def test_lines_without_an_event_are_published_as_dead_letters_the_sink_stores(env: Env):
    data = _post(env.client)["data"]
    assert data["accepted"] == 4  # the trace, its tool call, the result, the feedback
    assert data["dead_lettered"] == {
        "tool_call:evaluate": 1, "trace:add-span": 1, "unparsed:unparsed": 1,
    }  # fmt: skip
    assert [r["line"] for r in data["rejected"]] == [5, 6]
    # The sink reads them as it reads the processors' dead letters.
    rows = {row.raw.decode(): row for row in _rows(env)}
    assert set(rows) == set(LINES.split("\n")[4:])
    tool = rows[LINES.split("\n")[4]]
    assert (tool.topic, tool.partition, tool.index) == ("gateway.maxim", 0, 0)
    assert tool.event_id is not None and tool.event_id.startswith("mx_")
    assert tool.reason == (
        "maxim tool_call.evaluate: not modelled by logflume; kept verbatim (project proj-a)"
    )
    assert rows["not a commit line"].reason.startswith("maxim line: refused (line: is not")
    # A re-sent batch yields the same origins: dead_letters (unique on them) keeps one row.
    _post(env.client)
    origins = [(r.topic, r.partition, r.offset, r.index) for r in _rows(env)]
    assert len(origins) == 6 and len(set(origins)) == 3


def _rows(env: Env) -> list[DeadLetterRow]:
    """The gateway's dead-letter records as the sink reads them."""
    batch = Batch()
    for offset, record in enumerate(env.letters.records):
        batch.add_dead_letter("logflume.deadletter", record.partition, offset, record.value)
    return batch.dead_letters


def test_no_2xx_while_the_dead_letters_are_neither_sent_nor_spooled(env: Env):
    env.letters.down = True  # the dead-letter topic's broker away, and no spool
    answer = env.client.post("/api/sdk/v3/log", params={"id": "r"}, content=LINES, headers=MAXIM)
    assert answer.status_code == 503 and "error" in answer.json()
    env.letters.down = False
    assert _post(env.client)["data"]["dead_lettered"]["tool_call:evaluate"] == 1


def test_dead_letters_are_spooled_when_kafka_is_away(tmp_path: Path):
    letters = MemoryTransport(partitions=2, packed=False, down=True)
    spool = Spool(tmp_path / "dl", max_bytes=1 << 20, segment_bytes=1 << 16, fsync="batch")
    parts = Components(
        transport=MemoryTransport(partitions=2), spool=None, keys=DictKeys(),
        nodes=MemoryNodeIndex(), dead_letter_transport=letters, dead_letter_spool=spool,
    )  # fmt: skip
    options = GatewaySettings(linger_ms=0, held_sweep_s=0, retry_backoff_max_s=0.05)
    with TestClient(create_app(Settings(), options, parts)) as client:
        text = 'tool_call{id=tc1,action=evaluate,data={"with": "evaluators"}}'
        data = _post(client, text)["data"]
        assert data["delivery"] == "spooled"
        assert data["dead_lettered"] == {"tool_call:evaluate": 1}
        letters.down = False  # the drainer sends the spool once Kafka is back
        client.portal.call(_until, lambda: len(letters.records) == 1)  # type: ignore[union-attr]


async def _until(done: Callable[[], bool]) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError


def test_the_counter_moves_per_entity_and_action(env: Env):
    def count(**labels: str) -> float:
        page = env.client.get("/metrics").text
        return metric(page, "logflume_gateway_maxim_dead_letters_total", **labels)

    labels = {"entity": "tool_call", "action": "evaluate", "kind": "not_modelled"}
    before = count(**labels)
    _post(env.client)
    assert count(**labels) == before + 1
    assert count(entity="unparsed", action="unparsed", kind="refused") >= 1


def test_a_file_attachment_keeps_its_size_and_type_and_never_its_bytes(env: Env):
    key = "repo/trace/t1/files/original/f1"
    answer = env.client.get(
        "/api/sdk/v1/log-repositories/attachments/upload-url",
        params={"key": key, "mimeType": "application/pdf", "size": 5},
        headers=MAXIM,
    )
    assert answer.status_code == 200, answer.text
    url = answer.json()["data"]["url"]
    (event,) = [e for e in env.sent() if e["type"] == "node"]
    assert event["body"]["kind"] == "attachment" and event["body"]["id"] == "f1"
    assert event["body"]["trace_id"] == "t1" and event["body"]["parent_id"] is None
    assert event["body"]["attachment"] == {"key": key, "mime_type": "application/pdf", "size": 5}
    upload = env.client.put(url, content=b"%PDF-")  # no key: a signed URL's upload
    assert upload.status_code == 200 and upload.json()["data"]["discarded_bytes"] == 5
    assert b"%PDF-" not in b"".join(r.value for r in env.transport.records)
    bad = env.client.get("/api/sdk/v1/log-repositories/attachments/upload-url",
                         params={"key": "nonsense"}, headers=MAXIM)  # fmt: skip
    assert bad.status_code == 400 and "error" in bad.json()
