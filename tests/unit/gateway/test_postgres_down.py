"""The gateway with PostgreSQL unreachable (no network: a pool whose every call fails as
asyncpg does when the server is stopped): writes are answered 2xx from caches and the
local spool, reads and unknown keys 503 with ``Retry-After``, never 500; what was deferred
is written once the pool answers again (the real outage: tests/faults/test_postgres_outage.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway import Components, GatewaySettings, create_app
from gateway.auth import PgKeyStore, hash_key
from gateway.deferred import Deferred, VersionToResolve
from gateway.held import MemoryHeldLines
from gateway.nodes import PgNodeIndex
from gateway.outage import DatabaseWatch
from gateway.release import drain_deferred
from gateway.store import ReadStore
from gateway.unsaved import PgUnsavedIndex
from kernel.settings import Settings
from producers.contract.ids import prompt_id_for_path
from producers.sdk import MemoryTransport, Spool

KEY = "lf_key-a"
A = {"X-API-KEY": KEY}


class FlakyPool:
    """Answers like a pool over ``api_keys``, ``prompt_versions`` and the write tables
    while ``up``; raises ``ConnectionRefusedError`` (what a stopped server gives) while not."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0
        self.executed: list[tuple[str, tuple[Any, ...]]] = []
        self.versions: dict[str, str] = {}  # prompt id -> newest version id

    def _check(self) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionRefusedError(111, "Connection refused")

    async def fetchval(self, sql: str, *args: Any, timeout: float) -> Any:
        self._check()
        if "api_keys" in sql:
            return "proj-a" if args[0] == hash_key(KEY) else None
        if "prompt_versions" in sql:
            return self.versions.get(args[1])
        raise AssertionError(sql)

    async def fetch(self, sql: str, *args: Any, timeout: float) -> list[Any]:
        self._check()
        return []

    async def fetchrow(self, sql: str, *args: Any, timeout: float) -> Any:
        self._check()
        return None

    async def execute(self, sql: str, *args: Any, timeout: float) -> str:
        self._check()
        self.executed.append((sql, args))
        return "INSERT 0 1"


class Env:
    def __init__(self, client: TestClient, pool: FlakyPool, transport: MemoryTransport,
                 held: MemoryHeldLines) -> None:  # fmt: skip
        self.client, self.pool, self.transport, self.held = client, pool, transport, held

    @property
    def gateway(self) -> Any:
        return self.client.app.state.gateway  # type: ignore[attr-defined]

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the app's loop (where its pool and publisher live)."""

        async def call() -> Any:
            return await coro

        return self.client.portal.call(call)  # type: ignore[union-attr]


class DownHeldLines(MemoryHeldLines):
    """The held-lines table, unreachable while the pool is down."""

    def __init__(self, pool: FlakyPool) -> None:
        super().__init__()
        self._pool = pool

    async def hold(self, lines: Any) -> None:
        self._pool._check()
        await super().hold(lines)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    pool = FlakyPool()
    watch = DatabaseWatch()
    transport = MemoryTransport(partitions=4)
    held = DownHeldLines(pool)
    spool = Spool(tmp_path / "events", max_bytes=1 << 20, segment_bytes=1 << 16, fsync="batch")
    deferred = Spool(tmp_path / "deferred", max_bytes=1 << 20, segment_bytes=1 << 16,
                     fsync="batch")  # fmt: skip
    parts = Components(
        transport=transport, spool=spool,
        keys=PgKeyStore(pool, ttl_s=0, watch=watch),  # type: ignore[arg-type]
        nodes=PgNodeIndex(pool, cache_size=100, watch=watch),  # type: ignore[arg-type]
        store=ReadStore(pool),  # type: ignore[arg-type]
        held=held,
        unsaved=PgUnsavedIndex(pool, watch=watch),  # type: ignore[arg-type]
        deferred_spool=deferred, watch=watch,
    )  # fmt: skip
    options = GatewaySettings(max_body_bytes=64 * 1024, linger_ms=0, held_sweep_s=0)
    with TestClient(create_app(Settings(), options, parts)) as client:
        yield Env(client, pool, transport, held)


def test_writes_are_answered_2xx_and_reads_503_while_postgres_is_down(env: Env) -> None:
    client = env.client
    assert client.get("/healthz", headers=A).status_code == 200
    assert client.post("/v5/prompts/log", headers=A, json={"path": "a/b", "output": "up"}
                       ).status_code == 200  # the key is verified once  # fmt: skip
    env.pool.up = False
    # Logs (the version only PostgreSQL knows is left for later), updates, the batch.
    by_path = client.post("/v5/prompts/log", headers=A,
                          json={"path": "a/b", "reference_id": "r-1", "output": "x"})  # fmt: skip
    assert by_path.status_code == 200, by_path.text
    assert by_path.json()["version_id"] is None
    legacy = client.post("/logs", headers=A, json={"project": "a/b", "output": "y"})
    assert legacy.status_code == 200, legacy.text
    update = client.patch("/logs", headers=A, params={"reference_id": "r-1"},
                          json={"output": "z"})  # fmt: skip
    assert update.status_code == 200, update.text
    assert update.json()["id"] == by_path.json()["id"]  # known to this process
    unsaved = client.post("/v5/prompts/log", headers=A,
                          json={"path": "a/b", "save": False, "output": "secret",
                                "reference_id": "r-2"})  # fmt: skip
    assert unsaved.status_code == 200
    later = client.patch("/logs", headers=A, params={"reference_id": "r-2"},
                         json={"output": "secret too"})  # fmt: skip
    assert later.status_code == 200
    batch = client.post("/v1/events", headers=A, json=[
        {"type": "log", "event_id": "e-1", "ts": "2026-12-02T12:00:00Z", "body": {"id": "l-1"}},
    ])  # fmt: skip
    assert batch.status_code == 202, batch.text
    # Maxim: a result whose generation is not known is held on disk; a node created now is
    # found from memory by the next request.
    maxim = {"x-maxim-api-key": KEY}
    lines = ('generation{id=g-early,action=result,data={"result": {"usage": '
             '{"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}}}')  # fmt: skip
    held = client.post("/api/sdk/v3/log", params={"id": "repo"}, headers=maxim, content=lines)
    assert held.status_code == 200 and held.json()["data"]["held"] == 1, held.text
    created = (
        'trace{id=t-1,action=create,data={"name": "t"}}\n'
        'trace{id=t-1,action=add-span,data={"id": "s-1", "name": "s"}}'
    )
    assert client.post("/api/sdk/v3/log", params={"id": "repo"}, headers=maxim,
                       content=created).status_code == 200  # fmt: skip
    ended = client.post("/api/sdk/v3/log", params={"id": "repo"}, headers=maxim,
                        content='span{id=s-1,action=end,data={}}')  # fmt: skip
    assert ended.status_code == 200 and ended.json()["data"]["accepted"] == 1, ended.text
    # Reads and unknown keys: 503 with Retry-After, never 500.
    for response in (
        client.get(f"/logs/{by_path.json()['id']}", headers=A),
        client.get("/traces/t-1", headers=A),
        client.post("/logs", headers={"X-API-KEY": "lf_never-seen"}, json={}),
        client.post(
            "/api/sdk/v3/log",
            params={"id": "repo"},
            headers={"x-maxim-api-key": "lf_never-seen"},
            content=created,
        ),
    ):
        assert response.status_code == 503, response.text  # fmt: skip
        assert response.headers["retry-after"]
    assert client.post("/api/sdk/v3/log", params={"id": "repo"},
                       headers={"x-maxim-api-key": "lf_never-seen"}, content=created
                       ).json()["error"]["message"]  # the Maxim SDK's shape  # fmt: skip
    health = client.get("/healthz").json()
    assert (health["postgres"], health["deferred"]) == ("unreachable", True)
    sent = env.transport.bodies()
    assert sum(1 for e in sent if e["type"] == "log") == 5  # nothing of them waits for PG
    # The update of the save=false log recognised from this process's memory: no payload.
    (stripped,) = [e for e in sent if e["type"] == "log_update"
                   and e["body"]["reference_id"] == "r-2"]  # fmt: skip
    assert "output" not in stripped["body"]

    # PostgreSQL is back: the sweep's steps write what waited and resolve the versions.
    env.pool.up = True
    env.pool.versions = {prompt_id_for_path("a/b"): "prv_newest"}
    gateway = env.gateway
    assert env.run(gateway.nodes.flush()) == 2  # the trace and its span
    assert env.run(gateway.ingest.unsaved.flush()) == 2  # id: and ref: of the unsaved log
    assert env.run(drain_deferred(gateway)) == 1 + 3  # one line held, three versions
    assert not gateway.deferred.has_unsent()
    assert [h.node_id for h in env.held.lines.values()] == ["g-early"]
    versions = [e for e in env.transport.bodies() if e["type"] == "log"
                and "version_id" in e["body"]
                and set(e["body"]) <= {"id", "reference_id", "version_id"}]  # fmt: skip
    assert {e["body"]["version_id"] for e in versions} == {"prv_newest"}
    assert {e["body"]["id"] for e in versions} == {
        by_path.json()["id"], legacy.json()["id"], unsaved.json()["id"]
    }  # fmt: skip


def test_a_deferred_item_waits_while_postgres_is_still_down(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 16, fsync="batch")
    deferred = Deferred(spool)
    asyncio.run(deferred.resolve_versions([VersionToResolve("p", "l-1", None, "pr-1", None)]))
    items = asyncio.run(deferred.read())
    assert items is not None and [v.log_id for v in items.versions] == ["l-1"]
    # Not acknowledged (its work failed): read again, in order.
    again = asyncio.run(deferred.read())
    assert again is not None and [v.log_id for v in again.versions] == ["l-1"]
    deferred.ack(again)
    assert not deferred.has_unsent()


def test_after_a_failure_the_write_paths_do_not_ask_again_for_a_second(env: Env) -> None:
    """A database that hangs instead of refusing would cost every lookup a query timeout."""
    client = env.client
    assert client.post("/v1/events", headers=A, json=[]).status_code == 202  # key verified
    env.pool.up = False
    calls = env.pool.calls
    for _ in range(5):
        answer = client.post("/v5/prompts/log", headers=A, json={"path": "a/b", "output": "x"})
        assert answer.status_code == 200 and answer.json()["version_id"] is None
    assert env.pool.calls == calls + 1  # the first key check failed; then none was made
    assert env.gateway.watch.fallbacks["version"] == 5
    # A log with the Prompt's details needs no lookup: its version is its content's hash.
    detailed = client.post("/v5/prompts/log", headers=A,
                           json={"path": "a/b", "prompt": {"model": "gpt-4o"}})  # fmt: skip
    assert detailed.status_code == 200 and detailed.json()["version_id"].startswith("prv_")
