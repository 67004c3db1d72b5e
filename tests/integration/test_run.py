"""``logflume run`` as a user runs it: three stages as children, a SIGKILLed child comes
back, events flow through the gateway to PostgreSQL, every stage's /metrics counters move,
and SIGINT stops every child (no orphans) with exit status 0."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import pytest

from gateway.auth import create_key
from tests.integration.pipeline_env import (
    alive,
    children,
    cli_env,
    free_base_port,
    free_port,
    metric,
    own_pipeline,
    spawn_run,
)
from tests.services import Services

pytestmark = pytest.mark.integration

T = TypeVar("T")


async def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 120) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await asyncio.to_thread(probe)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


PROCESSORS = 2  # `logflume run`'s default


def _stages(pid: int) -> dict[str, int] | None:
    """{"gateway": pid, "process": pid of the first worker, "sink": pid} once the gateway,
    both processor workers (the default on this 2-core machine) and the sink run."""
    found: dict[str, list[int]] = {}
    for child, cmdline in sorted(children(pid).items()):
        for stage in ("gateway", "process", "sink"):
            if cmdline.rstrip().endswith(f"-m logflume {stage}"):
                found.setdefault(stage, []).append(child)
    if len(found) != 3 or len(found["process"]) != PROCESSORS:
        return None
    return {stage: pids[0] for stage, pids in found.items()}


def _events(trace_id: str) -> list[dict]:
    ts = datetime.now(UTC).isoformat()
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    completion = {"id": "c1", "created": 1_763_800_000, "model": "gpt-4o-mini", "usage": usage,
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "hi"}}]}  # fmt: skip

    def envelope(etype: str, body: dict) -> dict:
        return {"event_id": uuid.uuid4().hex, "type": etype, "ts": ts, "body": body}

    return [
        envelope("trace", {"id": trace_id, "name": "run-test"}),
        envelope("generation", {"id": f"{trace_id}-g", "trace_id": trace_id,
                                "provider": "openai", "model": "gpt-4o-mini",
                                "messages": [{"role": "user", "content": "hello"}]}),
        envelope("generation_result", {"generation_id": f"{trace_id}-g", "trace_id": trace_id,
                                       "result": completion}),
        envelope("trace", {"id": trace_id, "action": "end"}),
    ]  # fmt: skip


async def test_run_restarts_a_killed_stage_exposes_metrics_and_stops_cleanly(
    services: Services, tmp_path: Path
) -> None:
    async with own_pipeline(services, "run") as settings:
        conn = await asyncpg.connect(settings.dsn, timeout=30)
        try:
            _, key = await create_key(conn, "proj-run")
        finally:
            await conn.close()
        port, base = free_port(), free_base_port((10, 11, 20))
        env = cli_env(settings, tmp_path / "home", LOGFLUME_GATEWAY_PORT=str(port),
                      LOGFLUME_METRICS_PORT=str(base))  # fmt: skip
        run = spawn_run(env, tmp_path / "run.log")
        seen: set[int] = set()
        try:
            first = await eventually(lambda: _stages(run.pid), "three stages", 60)
            seen |= set(first.values())

            os.kill(first["sink"], signal.SIGKILL)
            second = await eventually(
                lambda: (s if (s := _stages(run.pid)) and s["sink"] != first["sink"] else None),
                "the sink to be restarted", 60,
            )  # fmt: skip
            seen |= set(second.values())
            assert second["gateway"] == first["gateway"]
            assert second["process"] == first["process"]

            url = f"http://127.0.0.1:{port}"
            headers = {"X-API-KEY": key}
            await eventually(lambda: _ok(f"{url}/healthz"), "the gateway", 60)
            trace_id = f"run-{uuid.uuid4().hex[:8]}"
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
                answer = await http.post("/v1/events", json=_events(trace_id))
                assert answer.status_code == 202, answer.text
            await eventually(
                lambda: _trace_tokens(f"{url}/traces/{trace_id}", key), "the trace stored", 150
            )

            # One metrics port per worker (instances 0, 1: they share the partitions). The
            # API may show the trace before the traces stage's window is flushed (outputs
            # are counted then), so wait for the counters themselves.
            worker_urls = [f"http://127.0.0.1:{base + 10 + i}/metrics" for i in range(PROCESSORS)]
            workers = await eventually(
                lambda: _counted(worker_urls), "the workers' stage counters", 60
            )
            async with httpx.AsyncClient(timeout=10) as http:
                sink = (await http.get(f"http://127.0.0.1:{base + 20}/metrics")).text
                gateway = (await http.get(f"{url}/metrics")).text
            worker = workers[0]
            assert metric(sink, "logflume_sink_values_total") >= 1
            assert metric(sink, "logflume_sink_rows_total", table="generations") >= 1
            assert metric(sink, "logflume_sink_write_seconds_count") >= 1
            assert "logflume_sink_" not in worker and "logflume_stage_" not in sink
            assert metric(gateway, "logflume_gateway_requests_total", route="/v1/events",
                          status="202") == 1  # fmt: skip
            assert metric(gateway, "logflume_gateway_requests_total",
                          route="/traces/{id}", status="200") >= 1  # fmt: skip
            assert metric(gateway, "logflume_gateway_events_sent_total") >= 4
            lag = await eventually(
                lambda: _lag(f"http://127.0.0.1:{base + 20}/metrics", settings.sink_group),
                "the sink's lag gauge", 30,
            )  # fmt: skip
            assert lag == 0

            run.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(run.wait, 90) == 0
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        log = (tmp_path / "run.log").read_text(errors="replace")
        assert "sink-1 exited unexpectedly (signal SIGKILL)" in log, log[-3000:]
        assert "sink-1 restarted" in log
        assert not [pid for pid in seen if alive(pid)], log[-3000:]
        assert not children(run.pid)


def _counted(urls: list[str]) -> list[str] | None:
    """The workers' /metrics texts once, summed over them, stage 1 has counted a record and
    stage 2 an output; None before (or while one does not answer)."""
    try:
        texts = [httpx.get(url, timeout=2).text for url in urls]
    except httpx.HTTPError:
        return None
    for name, stage in (("records", "entities"), ("outputs", "traces")):
        if sum(metric(t, f"logflume_stage_{name}_total", stage=stage) for t in texts) < 1:
            return None
    return texts


def _ok(url: str) -> bool | None:
    try:
        return True if httpx.get(url, timeout=2).status_code == 200 else None
    except httpx.HTTPError:
        return None


def _trace_tokens(url: str, key: str) -> int | None:
    try:
        answer = httpx.get(url, headers={"X-API-KEY": key}, timeout=5)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    tokens = (answer.json().get("totals") or {}).get("total_tokens")
    return tokens if tokens == 150 else None


def _lag(url: str, group: str) -> float | None:
    text = httpx.get(url, timeout=5).text
    if f'group="{group}"' not in text:
        return None
    value = metric(text, "logflume_consumer_lag", group=group)
    return value if value == 0 else None
