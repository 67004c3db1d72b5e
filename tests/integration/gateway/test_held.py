"""Maxim lines whose span or generation is not known yet, against a real PostgreSQL and
broker: held durably, released by whichever gateway process records the node (racing
requests included), kept when a release fails, expired into dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from gateway import GatewaySettings, create_app
from gateway.held import EXPIRED_TOPIC, HeldLine, PgHeldLines
from gateway.maxim import event_id, parse_lines
from kernel.settings import Settings
from tests.integration.gateway.helpers import Env, own_env, raw_events
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@contextlib.asynccontextmanager
async def gateway(
    settings: Settings, spool: Path, **options: float
) -> AsyncIterator[httpx.AsyncClient]:
    """One gateway process's app (its own node cache) over the shared database."""
    app = create_app(settings, GatewaySettings(spool_dir=spool, **options))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def _creates(trace: str, generations: list[str]) -> str:
    lines = [f'trace{{id={trace},action=create,data={{"name": "t"}}}}',
             f'trace{{id={trace},action=add-span,data={{"id": "{trace}-s"}}}}']  # fmt: skip
    lines += [
        f'span{{id={trace}-s,action=add-generation,data={{"id": "{g}", "provider": "openai", '
        f'"model": "gpt-4o", "messages": []}}}}'
        for g in generations
    ]
    return "\n".join(lines)


def _result(generation: str, tokens: int) -> str:
    return (f'generation{{id={generation},action=result,data={{"result": {{"id": "c-{generation}",'
            f' "created": 1, "choices": [], "usage": {{"prompt_tokens": {tokens}, '
            f'"completion_tokens": 1}}}}}}}}')  # fmt: skip


def _event_ids(project: str, *bodies: str) -> set[str]:
    """The event ids the gateway gives these lines (a hash of the project and the line)."""
    return {event_id(project, line) for body in bodies for line in parse_lines(body)[0]}


async def _post(client: httpx.AsyncClient, key: str, body: str) -> dict:
    response = await client.post("/api/sdk/v3/log", params={"id": "repo"}, content=body,
                                 headers={"x-maxim-api-key": key})  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def _held_count(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.dsn, timeout=10)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM gateway_held_lines"))
    finally:
        await conn.close()


@pytest.fixture
async def env(services: Services) -> AsyncIterator[Env]:
    async with own_env(services, "held") as created:
        yield created


async def test_a_result_held_by_one_gateway_is_released_by_another(env: Env, tmp_path: Path):
    key = env.keys["proj-a"]
    sweepless = {"held_sweep_s": 0}
    async with (
        gateway(env.settings, tmp_path / "a", **sweepless) as first,
        gateway(env.settings, tmp_path / "b", **sweepless) as second,
    ):
        early = await _post(first, key, _result("g1", 7))
        assert early["held"] == 1 and early["accepted"] == 0 and early["rejected"] == []
        assert await _held_count(env.settings) == 1
        late = await _post(second, key, _creates("t1", ["g1"]))
        assert late["accepted"] == 3 and late["released"] == 1
    assert await _held_count(env.settings) == 0
    seen = await raw_events(env.settings, _event_ids("proj-a", _result("g1", 7)), timeout_s=20)
    (result,) = [e for e in seen if e["type"] == "generation_result"]
    assert result["body"]["trace_id"] == "t1" and result["project"] == "proj-a"
    assert result["body"]["result"]["usage"]["prompt_tokens"] == 7


async def test_racing_creates_and_results_release_every_result(env: Env, tmp_path: Path):
    """Creates and results of 40 traces posted concurrently, in a shuffled order, through
    two gateways: every result is published exactly once and nothing stays held (no sweep
    runs, so the hold/record/release order alone must close every race)."""
    key = env.keys["proj-a"]
    rng = random.Random(6)
    traces = {f"t{i}": [f"t{i}-g{j}" for j in range(2)] for i in range(40)}
    bodies = [_creates(t, gs) for t, gs in traces.items()]
    bodies += [_result(g, 10 + n) for n, g in enumerate(g for gs in traces.values() for g in gs)]
    rng.shuffle(bodies)
    async with (
        gateway(env.settings, tmp_path / "a", held_sweep_s=0) as first,
        gateway(env.settings, tmp_path / "b", held_sweep_s=0) as second,
    ):
        answers = await asyncio.gather(
            *(_post((first, second)[i % 2], key, body) for i, body in enumerate(bodies))
        )
    assert sum(a["held"] for a in answers) > 0, "the shuffle should hold some results"
    assert sum(a["released"] for a in answers) == sum(a["held"] for a in answers)
    assert await _held_count(env.settings) == 0
    generations = {g: t for t, gs in traces.items() for g in gs}
    seen = await raw_events(env.settings, _event_ids("proj-a", *bodies), timeout_s=30)
    results = [e for e in seen if e["type"] == "generation_result"]
    assert sorted(e["body"]["generation_id"] for e in results) == sorted(generations)
    assert all(e["body"]["trace_id"] == generations[e["body"]["generation_id"]] for e in results)


async def test_a_claim_that_fails_keeps_its_lines_and_old_lines_expire(env: Env):
    pool = await asyncpg.create_pool(env.settings.dsn, min_size=1, max_size=2)
    try:
        held = PgHeldLines(pool)
        line = _result("g-lost", 3)
        now = datetime.now(UTC)
        await held.hold([HeldLine("proj-a", "mx_1", "g-lost", line, 0, now)] * 2)  # kept once
        with pytest.raises(RuntimeError):
            async with held.claim("proj-a", ["g-lost"]) as claimed:
                assert [h.line for h in claimed] == [line]
                raise RuntimeError("publish failed")
        async with held.claim("proj-b", ["g-lost"]) as other_project:
            assert other_project == []
        assert await held.resolvable(10) == []  # g-lost was never created
        assert await held.expire(3600) == 0
        assert await held.expire(0) == 1
        letter = await pool.fetchrow("SELECT * FROM dead_letters WHERE topic = $1", EXPIRED_TOPIC)
        assert letter["event_id"] == "mx_1" and "never created" in letter["reason"]
        assert bytes(letter["raw"]).decode() == line
        assert await held.expire(0) == 0
    finally:
        await pool.close()
