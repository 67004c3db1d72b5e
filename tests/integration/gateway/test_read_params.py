"""Read parameters and Maxim ids against the real PostgreSQL: what passes validation is a
query PostgreSQL and asyncpg take, everything else is a 4xx naming the parameter or the
line's field; none of these is a 500 (each one was before)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from gateway import GatewaySettings, create_app
from kernel.settings import Settings
from tests.integration.gateway.helpers import Env, own_env
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MAXIM = "/api/sdk/v3/log"


@contextlib.asynccontextmanager
async def client(settings: Settings, spool: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, GatewaySettings(spool_dir=spool, held_sweep_s=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


@pytest.fixture
async def env(services: Services) -> AsyncIterator[Env]:
    async with own_env(services, "gwrp", projects=("proj-a",)) as created:
        yield created


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


async def test_read_parameters_past_what_postgres_takes_are_4xx(env: Env, tmp_path: Path):
    a = {"X-API-KEY": env.keys["proj-a"]}
    async with client(env.settings, tmp_path / "spool") as c:
        for url, params, field in [
            ("/v5/logs", {"page": "99999999999999999999"}, "query.page"),
            ("/v5/prompts", {"page": "99999999999999999999"}, "query.page"),
            ("/v5/logs", {"start_date": "0001-01-01T00:00:00+05:00"}, "query.start_date"),
            ("/v5/logs", {"end_date": "9999-12-31T23:59:59-01:00"}, "query.end_date"),
        ]:
            answer = await c.get(url, params=params, headers=a)
            assert answer.status_code == 422, (url, params, answer.text)
            assert [e["field"] for e in answer.json()["detail"]] == [field]
        for forged in [["0001-01-01T00:00:00+05:00", "x"], ["2026-01-01T00:00:00Z", "a\x00b"]]:
            for url in ("/logs", "/traces"):
                answer = await c.get(url, params={"cursor": _cursor(forged)}, headers=a)
                assert answer.status_code == 400, (url, forged, answer.text)
                assert answer.json()["detail"].startswith("cursor: ")
        # The bounds themselves are queries PostgreSQL takes.
        for params in [
            {"page": "1000000", "size": "500"},
            {"page": "1", "start_date": "0001-01-01T00:00:00", "end_date": "9999-12-31T23:59:59"},
            {"page": "1", "start_date": "0001-01-01T00:00:00-05:00"},
        ]:
            answer = await c.get("/v5/logs", params=params, headers=a)
            assert answer.status_code == 200, (params, answer.text)
            assert answer.json()["records"] == []
        last = await c.get("/v5/prompts", params={"page": "1000000"}, headers=a)
        assert last.status_code == 200
        oldest = {"cursor": _cursor(["0001-01-01T00:00:00-05:00", "x"])}
        assert (await c.get("/logs", params=oldest, headers=a)).status_code == 200


async def test_maxim_ids_postgres_cannot_hold_are_refused_lines(env: Env, tmp_path: Path):
    m = {"x-maxim-api-key": env.keys["proj-a"]}
    lines = [
        'trace{id=t1,action=create,data={"name":"x"}}',
        "span{id=a\x00b,action=end,data={}}",
        'trace{id=t1,action=add-span,data={"id":"s\\u0000x","name":"n"}}',
        f"trace{{id={'x' * 3000},action=create,data={{}}}}",
        'trace{id=t1,action=add-span,data={"id":"' + "y" * 3000 + '","name":"n"}}',
        'trace{id=t1,action=add-span,data={"id":"s1","name":"ok"}}',
    ]
    async with client(env.settings, tmp_path / "spool") as c:
        answer = await c.post(MAXIM, params={"id": "r"}, content="\n".join(lines), headers=m)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        assert data["accepted"] == 2 and data["held"] == 0
        assert [(r["line"], r["field"]) for r in data["rejected"]] == [
            (1, "id"), (2, "data.id"), (3, "id"), (4, "data.id")
        ]  # fmt: skip
        key = "r/span/a\x00b/files/original/f"
        url = "/api/sdk/v1/log-repositories/attachments/upload-url"
        answer = await c.get(url, params={"key": key}, headers=m)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["message"].startswith("query.key: ")
    conn = await asyncpg.connect(env.settings.dsn, timeout=10)
    try:
        nodes = await conn.fetch("SELECT id FROM gateway_nodes ORDER BY id")
    finally:
        await conn.close()
    assert [r["id"] for r in nodes] == ["s1", "t1"]
