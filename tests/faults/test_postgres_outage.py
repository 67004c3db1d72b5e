"""Ingestion does not depend on PostgreSQL (issue 14, item 5): with the whole pipeline
running, PostgreSQL is stopped (``pg_ctl -m fast``) for 60 s while the official humanloop
and maxim-py SDKs, Humanloop's update by reference id and older ``POST /logs``, and the
native batch send through the gateway. Every request is answered 2xx (the gateway's own
request counter shows no other status), and once PostgreSQL is back every event is in it:
the logs with their tokens, the updates (by reference id and by the SDK's
``prompts.update_log``), the versions of the logs sent by path alone (answered
``version_id: null``, resolved once PostgreSQL answers), the Maxim traces and generations
with their results (half of them pushed before their generation, so held on the gateway's
disk meanwhile). A key the gateway never saw gets 503 with ``Retry-After``, never 500.

The services are the test's own (``tests/faults/scratch.py``), since it stops PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from gateway import GatewaySettings
from gateway.auth import create_key, new_key
from tests.faults.outage_clients import PATH, PROMPT
from tests.faults.scratch import scratch_services
from tests.integration.gateway.helpers import ServedGateway
from tests.integration.sinks.harness import eventually
from tests.processes import PipelineProcesses
from tests.services import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

OUTAGE_S = 60.0
SENDING_S = 42.0  # the clients (~10 s to start and finish) stop before PostgreSQL is back
# Greedy: a route template holds braces of its own (``route="/logs/{id}"``).
_REQUESTS = re.compile(r"^logflume_gateway_requests_total\{(?P<labels>.*)\} (?P<value>\S+)$")


def _statuses(metrics: str) -> dict[str, float]:
    """Requests answered by the gateway, by status."""
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        match = _REQUESTS.match(line)
        if match:
            status = re.search(r'status="(\d+)"', match["labels"])
            assert status is not None
            counts[status[1]] = counts.get(status[1], 0) + float(match["value"])
    return counts


def _fallbacks(metrics: str) -> dict[str, float]:
    found = re.findall(r'^logflume_gateway_db_fallbacks_total\{what="(\w+)"\} (\S+)$', metrics,
                       re.MULTILINE)  # fmt: skip
    return {what: float(value) for what, value in found}


async def _rows(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, dict[str, Any]]:
    return {row["id"]: dict(row) for row in await conn.fetch(sql, *args, timeout=30)}


async def test_ingestion_goes_on_while_postgres_is_down(tmp_path: Path) -> None:
    async with scratch_services(
        topic_prefix="pgdown", partitions=4, sink_group="pgdown-sink", sink_linger_ms=100,
        sink_retry_max_s=2.0,
    ) as services:  # fmt: skip
        settings = services.settings
        conn = await asyncpg.connect(settings.dsn, timeout=30)
        try:
            _, key = await create_key(conn, "outage")
        finally:
            await conn.close()
        processes = PipelineProcesses(settings, tmp_path / "processes")
        processes.start_worker("w1")
        processes.start_sink("s1")
        # Keys are re-verified after 5 s: during the outage they come from the last answer.
        options = GatewaySettings(spool_dir=tmp_path / "spool", key_cache_ttl_s=5,
                                  held_sweep_s=1)  # fmt: skip
        try:
            with ServedGateway(settings, options) as gateway:
                url = gateway.url
                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    await _run(services, processes, http, url, key, tmp_path)
        finally:
            processes.stop_all()


async def _run(
    services: Any, processes: PipelineProcesses, http: httpx.AsyncClient, url: str, key: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    headers = {"X-API-KEY": key}
    dsn = services.settings.dsn
    # Before the outage: the Prompt's version is stored (the logs sent by path alone during
    # the outage belong to it), and the key is verified once.
    warm = await http.post("/v5/prompts/log", headers=headers, json={
        "path": PATH, "prompt": PROMPT, "messages": [{"role": "user", "content": "warm"}],
        "output": "warm", "prompt_tokens": 1, "output_tokens": 1,
    })  # fmt: skip
    assert warm.status_code == 200, warm.text
    version = warm.json()["version_id"]

    async def stored_version() -> bool:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM prompt_versions WHERE id = $1", version, timeout=10
                )
            )
        finally:
            await conn.close()

    await eventually(stored_version, timeout_s=180, interval_s=1.0, what="the warm-up log")
    before = _statuses((await http.get("/metrics")).text)

    await asyncio.to_thread(services.postgres.stop)  # pg_ctl stop -m fast
    stopped = time.monotonic()
    # A key this gateway never saw: neither accepted nor refused, 503 with Retry-After.
    unknown = await http.post("/logs", headers={"X-API-KEY": new_key()},
                              json={"project": PATH, "output": "x"})  # fmt: skip
    assert unknown.status_code == 503 and unknown.headers["retry-after"], unknown.text
    # Reads need the database: 503 with Retry-After, not 500.
    read = await http.get("/logs/nope", headers=headers)
    assert read.status_code == 503 and read.headers["retry-after"], read.text
    out = tmp_path / "sent.json"
    clients = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.faults.outage_clients", url, key, str(SENDING_S), str(out),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await clients.communicate()
    assert clients.returncode == 0, output.decode(errors="replace")[-3000:]
    healthz = (await http.get("/healthz")).json()
    assert healthz["postgres"] == "unreachable" and healthz["deferred"] is True
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
    down_s = time.monotonic() - stopped
    await asyncio.to_thread(services.postgres.start)

    sent = orjson.loads(out.read_bytes())
    assert sent["failures"] == [] and sent["rounds"] >= 5, sent["failures"]
    metrics = (await http.get("/metrics")).text
    after = _statuses(metrics)
    during = {status: after[status] - before.get(status, 0) for status in after}
    # The two 503s above are the only answers that are not 2xx.
    assert {s: n for s, n in during.items() if not s.startswith("2") and n} == {"503": 2}
    fallbacks = _fallbacks(metrics)
    assert {"api_key", "version", "maxim_hold"} <= fallbacks.keys(), fallbacks
    # Answered without the database: the versions of the logs sent by path alone are null.
    assert all(v is None for _, v in sent["by_path"])
    assert all(v is None for _, v, _ in sent["legacy"])
    assert all(v == version for _, v, _ in sent["detailed"])

    conn: asyncpg.Connection | None = None
    missing: list[str] = []

    async def everything_stored() -> bool:
        nonlocal conn, missing
        try:
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(dsn, timeout=10)
            missing = await _missing(conn, sent, version)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            missing = [f"cannot read yet: {exc}"]
        return not missing

    try:
        await eventually(everything_stored, timeout_s=180, interval_s=2.0,
                         what="every event sent during the outage in PostgreSQL")  # fmt: skip
    except AssertionError:
        pytest.fail(f"not stored: {missing[:20]}\n{processes.logs()}")
    finally:
        if conn is not None:
            await conn.close()
    assert not (await http.get("/healthz")).json()["deferred"]
    print(f"\nPostgreSQL down {down_s:.1f} s; {sent['rounds']} rounds, {sum(during.values()):.0f}"
          f" requests: {during}; fallbacks {fallbacks}")  # fmt: skip


async def _missing(conn: asyncpg.Connection, sent: dict[str, Any], version: str) -> list[str]:
    """What of ``sent`` PostgreSQL does not hold (yet): empty once everything is there."""
    missing: list[str] = []
    logs = await _rows(conn, "SELECT id, reference_id, version_id, prompt_tokens, output_tokens,"
                             " output FROM logs WHERE project = 'outage'")  # fmt: skip
    for log_id, log_version, tokens in sent["detailed"]:
        row = logs.get(log_id)
        want = (log_version, tokens, sent["sdk_updated"].get(log_id, 5))
        if row is None or (row["version_id"], row["prompt_tokens"], row["output_tokens"]) != want:
            missing.append(f"log {log_id} {want}: {row}")
    for log_id, _ in sent["by_path"]:
        row = logs.get(log_id)
        if row is None or (row["version_id"], row["output"]) != (version, "by path"):
            missing.append(f"log {log_id} by path (version resolved later): {row}")
    for log_id, _, reference in sent["legacy"]:
        row = logs.get(log_id)
        want = (version, reference, sent["updated"][reference])  # the update merged
        if row is None or (row["version_id"], row["reference_id"], row["output"]) != want:
            missing.append(f"log {log_id} by reference {want}: {row}")
    for log_id in sent["native"]:
        if log_id not in logs:
            missing.append(f"log {log_id}")
    generations = await _rows(conn, "SELECT id, prompt_tokens, trace_id FROM generations"
                                    " WHERE project = 'outage'")  # fmt: skip
    for generation_id, tokens in sent["generations"].items():
        row = generations.get(generation_id)
        if row is None or row["prompt_tokens"] != tokens:
            missing.append(f"generation {generation_id} ({tokens} tokens): {row}")
    traces = await _rows(conn, "SELECT id, status, total_tokens FROM traces"
                               " WHERE project = 'outage'")  # fmt: skip
    for trace_id in sent["traces"]:
        row = traces.get(trace_id)
        if row is None or row["status"] != "completed" or not row["total_tokens"]:
            missing.append(f"trace {trace_id}: {row}")
    held = await conn.fetchval("SELECT count(*) FROM gateway_held_lines", timeout=10)
    if held:
        missing.append(f"{held} Maxim lines still held")
    return missing
