"""Deleting a log, a trace and a session against the whole pipeline: the humanloop SDK's
``logs.delete``, ``DELETE /traces/{id}`` and ``DELETE /sessions/{id}``; then the entities
are gone from every table and the totals of what remains are corrected, and they stay gone
after ``logflume replay --from earliest`` into a new database and after export + import
into another deployment (then replayed)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from humanloop import Humanloop

from kernel.settings import Settings
from producers.sdk import Client
from tests.e2e.conftest import Pipeline
from tests.integration.replay.history import logflume_ok
from tests.scan import archive_text, table_texts
from tests.services import Services, drop_database, scratch_environment, with_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

T = TypeVar("T")
PROMPT = {"model": "gpt-4o", "provider": "openai", "temperature": 0.1}


async def _until(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 120.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not reach the expected state in time")
        await asyncio.sleep(0.3)


def _completion(prompt: int, completion: int) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion",
            "created": 1764547200, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}  # fmt: skip


class World:
    """What the test sends: ids to delete carry ``gone``, ids to keep carry ``kept``."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.gone, self.kept = f"gone{tag}", f"kept{tag}"
        self.session_kept = f"sess-{self.kept}"
        self.session_gone = f"sess-{self.gone}"
        self.path = f"privacy/{self.kept}"  # the prompt outlives the deleted logs

    def send(self, settings: Settings, spool: Path) -> dict[str, str]:
        """Through the SDK: logs, a feedback and Maxim traces; the ids by role."""
        g, k = self.gone, self.kept
        ids = {"log_gone": f"data_{g}_1", "log_kept": f"data_{k}_1", "trace_gone": f"tr-{g}",
               "trace_in_session": f"tr-{g}-s", "log_in_session": f"data_{g}_2",
               "log_in_trace": f"data_{g}_3"}  # fmt: skip
        with Client(bootstrap_servers=settings.bootstrap_servers, topic=settings.topics.events,
                    project="proj-a", spool_dir=spool) as client:  # fmt: skip
            client.log(id=ids["log_gone"], reference_id=f"ref-{g}", path=self.path, prompt=PROMPT,
                       session_id=self.session_kept, prompt_tokens=100, output_tokens=10,
                       output=f"secret {g}")  # fmt: skip
            client.feedback(log_id=ids["log_gone"], reference_id=f"ref-{g}", value="good",
                            id=f"fbk-{g}")  # fmt: skip
            client.log(id=ids["log_kept"], path=self.path, prompt=PROMPT,
                       session_id=self.session_kept, prompt_tokens=30, output_tokens=3)  # fmt: skip
            # A trace in the kept session: a span, a generation with usage, a log in it.
            trace = client.trace(id=ids["trace_gone"], name="t", session_id=self.session_kept)
            span = trace.span(id=f"sp-{g}", name="plan")
            generation = span.generation(id=f"gen-{g}", provider="openai", model="gpt-4o",
                                         messages=[{"role": "user", "content": g}])  # fmt: skip
            generation.result(_completion(200, 20))
            span.end()
            trace.end()
            client.log(id=ids["log_in_trace"], trace_id=ids["trace_gone"], path=self.path,
                       prompt=PROMPT, prompt_tokens=5, output_tokens=5)  # fmt: skip
            # A session to delete whole: a log of its own and a trace.
            client.log(id=ids["log_in_session"], session_id=self.session_gone, path=self.path,
                       prompt=PROMPT, prompt_tokens=40, output_tokens=4)  # fmt: skip
            other = client.trace(id=ids["trace_in_session"], session_id=self.session_gone)
            other.generation(id=f"gen-{g}-s", provider="openai", model="gpt-4o").result(
                _completion(70, 7)
            )
            other.end()
            assert client.flush(30)
        return ids


async def _rows(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def _assert_deleted(dsn: str, world: World) -> None:
    """Nothing of the deleted entities in any table; the kept session and prompt version
    total what is left: the kept log alone (30 + 3 tokens)."""
    tables = await table_texts(dsn)
    holding = [t for t, text in tables.items() if world.gone in text and t != "dead_letters"]
    assert holding == [], f"deleted entities are still in {holding}"
    assert world.kept in tables["logs"]
    (session,) = await _rows(dsn, "SELECT * FROM sessions WHERE id = $1", world.session_kept)
    assert (session["prompt_tokens"], session["output_tokens"]) == (30, 3)
    assert session["counts"] in ({"trace": 1}, '{"trace": 1}')
    (stats,) = await _rows(
        dsn,
        "SELECT s.* FROM prompt_version_stats s JOIN prompt_versions v"
        " ON v.project = s.project AND v.id = s.id JOIN prompts p"
        " ON p.project = v.project AND p.id = v.prompt_id WHERE p.path = $1",
        world.path,
    )
    assert (stats["prompt_tokens"], stats["output_tokens"]) == (30, 3)


async def test_deleted_logs_traces_and_sessions_are_gone_and_stay_gone(
    pipeline: Pipeline, services: Services, tmp_path: Path
) -> None:
    settings = pipeline.env.settings
    world = World()
    ids = await asyncio.to_thread(world.send, settings, tmp_path / "spool")
    dsn = settings.dsn

    async def everything_stored() -> bool | None:
        logs = await _rows(dsn, "SELECT id FROM logs WHERE id = ANY($1::text[])",
                           [ids[k] for k in ids if k.startswith("log")])  # fmt: skip
        gens = await _rows(dsn, "SELECT id FROM generations WHERE id LIKE $1 AND cost > 0",
                           f"gen-{world.gone}%")  # fmt: skip
        feedback = await _rows(dsn, "SELECT id FROM feedback WHERE id = $1", f"fbk-{world.gone}")
        return True if len(logs) == 4 and len(gens) == 2 and feedback else None

    await _until(everything_stored)
    humanloop = Humanloop(api_key=pipeline.key(), base_url=f"{pipeline.url}/v5")
    await asyncio.to_thread(humanloop.logs.delete, id=[ids["log_gone"]])  # was 405
    async with httpx.AsyncClient(base_url=pipeline.url,
                                 headers={"X-API-KEY": pipeline.key()}) as http:  # fmt: skip
        trace = await http.delete(f"/traces/{ids['trace_gone']}")
        assert trace.status_code == 200, trace.text
        assert trace.json()["deleted"] == {"generation": 1, "log": 1, "span": 1, "trace": 1}
        session = await http.delete(f"/v5/sessions/{world.session_gone}")
        assert session.status_code == 200, session.text
        assert session.json()["deleted"]["log"] == 1

    async def deleted() -> bool | None:
        try:
            await _assert_deleted(dsn, world)
        except (AssertionError, ValueError):
            return None
        return True

    await _until(deleted)
    await _assert_deleted(dsn, world)  # with its message, had the wait masked one
    async with httpx.AsyncClient(base_url=pipeline.url) as http:
        answer = await http.get(f"/logs/{ids['log_gone']}", headers={"X-API-KEY": pipeline.key()})
        assert answer.status_code == 404

    home = tmp_path / "home"
    tag = uuid.uuid4().hex[:8]
    rebuilt = with_database(services.dsn, f"lf_del_rebuilt_{tag}")
    try:
        logflume_ok(settings, home, "replay", "--from", "earliest", "--database-url", rebuilt)
        await _assert_deleted(rebuilt, world)
    finally:
        await drop_database(services, f"lf_del_rebuilt_{tag}")

    archive = tmp_path / "history.jsonl.zst"
    logflume_ok(settings, home, "export", "--since", "earliest", "-o", str(archive))
    lines = [line for line in archive_text(archive).splitlines() if world.gone in line]
    assert lines and all('"type":"delete"' in line for line in lines)
    elsewhere = scratch_environment(
        services, f"lf_del_imp_{tag}", topic_prefix=f"lf-del-imp-{tag}", partitions=4
    )
    async with elsewhere as target:
        logflume_ok(target, home, "import", str(archive))
        logflume_ok(target, home, "replay", "--from", "earliest")
        await _assert_deleted(target.dsn, world)


async def test_the_cli_and_the_sdk_delete_logs(pipeline: Pipeline, tmp_path: Path) -> None:
    settings = pipeline.env.settings
    tag = uuid.uuid4().hex[:10]
    refs = [f"cli-{tag}", f"sdk-{tag}"]

    def send(*, delete: bool) -> None:
        with Client(bootstrap_servers=settings.bootstrap_servers, topic=settings.topics.events,
                    project="proj-a", spool_dir=tmp_path / "spool") as client:  # fmt: skip
            if delete:
                client.delete_log(reference_id=refs[1])
            else:
                for ref in refs:
                    client.log(reference_id=ref, path="privacy/cli", prompt_tokens=1)
            assert client.flush(30)

    async def stored() -> list[str]:
        sql = "SELECT reference_id FROM logs WHERE project = 'proj-a' AND reference_id = ANY($1)"
        return sorted(r["reference_id"] for r in await _rows(settings.dsn, sql, refs))

    await asyncio.to_thread(send, delete=False)
    await _until(lambda: _when(stored, lambda found: found == sorted(refs)))
    out = logflume_ok(settings, tmp_path / "home", "delete", "--project", "proj-a",
                      "--reference-id", refs[0])  # fmt: skip
    assert "1 log" in out
    await asyncio.to_thread(send, delete=True)
    await _until(lambda: _when(stored, lambda found: found == []))


async def _when(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool]) -> bool | None:
    return True if ok(await probe()) else None
