"""The gateway against a real broker and PostgreSQL: a 2xx only after Kafka's ack or the
spool's fsync (nothing accepted is lost when the broker is away), keys isolate projects."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from gateway import GatewaySettings, create_app
from gateway.auth import revoke_key
from kernel.settings import Settings
from tests.integration.gateway.helpers import Env, own_env, raw_events
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def client(settings: Settings, options: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


def _event(i: int, **body: object) -> dict:
    return {"event_id": f"evt-{i}", "type": "log", "ts": datetime.now(UTC).isoformat(),
            "body": {"id": f"data_{i}", "prompt_tokens": i, **body}}  # fmt: skip


@pytest.fixture
async def env(services: Services) -> AsyncIterator[Env]:
    async with own_env(services, "gwit") as created:
        yield created


async def test_accepted_events_are_in_kafka_when_the_answer_comes(env: Env, tmp_path: Path):
    options = GatewaySettings(spool_dir=tmp_path / "spool")
    async with client(env.settings, options) as c:
        headers = {"X-API-KEY": env.keys["proj-a"]}
        response = await c.post("/v1/events", json=[_event(i) for i in range(50)], headers=headers)
        assert response.status_code == 202 and response.json()["delivery"] == "sent"
        single = await c.post("/v5/prompts/log", json={"output": "hi"}, headers=headers)
        assert single.status_code == 200
    want = {f"evt-{i}" for i in range(50)}
    seen = await raw_events(env.settings, want, timeout_s=10)
    assert want <= {e["event_id"] for e in seen}
    assert {e["project"] for e in seen} == {"proj-a"}
    assert single.json()["id"] in {e["body"]["id"] for e in seen}


async def test_with_the_broker_away_events_are_spooled_then_delivered(env: Env, tmp_path: Path):
    spool = tmp_path / "spool"
    away = env.settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    options = GatewaySettings(spool_dir=spool, send_timeout_s=1.0)
    async with client(away, options) as c:
        headers = {"X-API-KEY": env.keys["proj-a"]}
        response = await c.post("/v1/events", json=[_event(i) for i in range(20)], headers=headers)
        assert response.status_code == 202 and response.json()["delivery"] == "spooled"
    assert any(spool.rglob("*.seg"))
    # The next gateway process (the broker is back) sends what the spool holds.
    async with client(env.settings, options):
        seen = await raw_events(env.settings, {f"evt-{i}" for i in range(20)}, timeout_s=20)
    assert {f"evt-{i}" for i in range(20)} <= {e["event_id"] for e in seen}


async def test_a_key_reads_and_writes_only_its_project(env: Env, tmp_path: Path):
    conn = await asyncpg.connect(env.settings.dsn, timeout=10)
    try:
        await conn.execute(
            "INSERT INTO logs (project, id, reference_id, prompt_tokens, output_tokens, tokens,"
            " prompt_cost, output_cost, cost, batch_ids, metadata, created_at, version)"
            " VALUES ('proj-a', 'data_a', 'ref-a', 10, 5, 15, 0.1, 0.2, 0.3, ARRAY['b1'],"
            " '{\"k\": 1}', now(), 1)"
        )
        await conn.execute(
            "INSERT INTO feedback (project, id, log_id, value, version)"
            " VALUES ('proj-a', 'fb1', 'data_a', 'true', 1)"
        )
    finally:
        await conn.close()
    options = GatewaySettings(spool_dir=tmp_path / "spool", key_cache_ttl_s=0)
    a = {"X-API-KEY": env.keys["proj-a"]}
    b = {"x-maxim-api-key": env.keys["proj-b"]}
    async with client(env.settings, options) as c:
        log = (await c.get("/v5/logs/data_a", headers=a)).json()
        assert log["observability_status"] == "completed"
        assert (log["tokens"], log["prompt_cost"], log["cost"]) == (15, 0.1, 0.3)
        assert log["batch_ids"] == ["b1"] and log["metadata"] == {"k": 1}
        assert log["feedback"][0]["value"] is True
        assert (await c.get("/logs/data_a", headers=b)).status_code == 404
        assert (await c.get("/logs", params={"reference_id": "ref-a"}, headers=b)).json()[
            "records"
        ] == []
        page = (await c.get("/logs", params={"reference_id": "ref-a"}, headers=a)).json()
        assert [r["id"] for r in page["records"]] == ["data_a"]
        assert (await c.get("/traces/data_a", headers=b)).status_code == 404
        written = await c.post("/v1/events", json=[_event(99)], headers=b)
        assert written.status_code == 202
        conn = await asyncpg.connect(env.settings.dsn, timeout=10)
        try:
            key_id = await conn.fetchval("SELECT id FROM api_keys WHERE project = 'proj-a'")
            assert await revoke_key(conn, key_id)
        finally:
            await conn.close()
        assert (await c.get("/v5/logs/data_a", headers=a)).status_code == 401
    seen = await raw_events(env.settings, {"evt-99"}, timeout_s=10)
    assert [e["project"] for e in seen if e["event_id"] == "evt-99"] == ["proj-b"]


async def test_keyset_pagination_walks_every_log_once(env: Env, tmp_path: Path):
    conn = await asyncpg.connect(env.settings.dsn, timeout=10)
    try:
        await conn.execute(
            "INSERT INTO logs (project, id, created_at, version)"
            " SELECT 'proj-a', 'data_' || i, timestamptz '2026-01-01' + (i / 3) * interval '1 s', 1"
            " FROM generate_series(1, 25) AS i"
        )
    finally:
        await conn.close()
    a = {"X-API-KEY": env.keys["proj-a"]}
    async with client(env.settings, GatewaySettings(spool_dir=tmp_path / "spool")) as c:
        ids: list[str] = []
        cursor = None
        while True:
            params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/logs", params=params, headers=a)).json()
            ids += [r["id"] for r in page["records"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert (await c.get("/logs", params={"cursor": "garbage"}, headers=a)).status_code == 400
    assert sorted(ids) == sorted(f"data_{i}" for i in range(1, 26)) and len(ids) == 25
