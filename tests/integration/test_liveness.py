"""Liveness under ``logflume run``: a worker wedged on an await that never returns (the
test-only hook of processors.faults) exits and is restarted by the supervisor, and every
event still lands in PostgreSQL exactly as the oracle says:

- wedged in its stream (outside any bound of ours): its watchdog sees partitions with lag
  and no progress and exits with status 75 within the stall bound;
- wedged in a send: the send's bound ends it with status 70;
- its event loop blocked in synchronous code: the watchdog's thread sees the loop's heartbeat
  stop and exits with status 75 within the stall bound.

The workers answer /healthz and /readyz, and their liveness metrics, on their metrics port."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from logflume.synthetic import generate_events, pack_events
from tests.integration.pipeline_env import (
    children,
    cli_env,
    free_base_port,
    metric,
    own_pipeline,
    spawn_run,
)
from tests.integration.sinks.harness import eventually
from tests.integration.sinks.stream import Published, publish, run_stages, until_oracle
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STALL_S = 10.0
SEND_TIMEOUT_S = 5.0
WORKERS = 2  # `logflume run`'s default: the other worker must not be taken for stuck
EVENTS = 4000


@dataclass(frozen=True)
class Wedge:
    point: str
    env: dict[str, str]
    status: int
    line: str  # what the worker's critical line says
    bound_s: float  # from when: the wedge (send) or the last records sent (stream)


WEDGES = [
    Wedge("stream", {"LOGFLUME_PROCESSOR_STALL_S": str(STALL_S)}, 75,
          "stalled: no progress on", STALL_S),
    Wedge("send", {"LOGFLUME_PROCESSOR_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S)}, 70,
          f"within {SEND_TIMEOUT_S:g} s (TimeoutError)", SEND_TIMEOUT_S),
    Wedge("loop", {"LOGFLUME_PROCESSOR_STALL_S": str(STALL_S)}, 75,
          "stalled: the event loop has not run for", STALL_S),
]  # fmt: skip


async def _probe(url: str) -> tuple[int, dict] | None:
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            answer = await http.get(url)
    except httpx.HTTPError:
        return None
    return answer.status_code, answer.json()


def _raw(topic: str, records: list[tuple[int, bytes]]) -> list[Published]:
    return [Published(topic, partition, value) for partition, value in records]


@pytest.mark.parametrize("wedge", WEDGES, ids=lambda w: w.point)
async def test_a_wedged_worker_is_restarted_within_the_bound_and_nothing_is_lost(
    services: Services, tmp_path: Path, wedge: Wedge
) -> None:
    async with own_pipeline(services, "stall") as settings:
        events = generate_events(EVENTS, seed=14)
        records = pack_events(events, settings.partitions, seed=14)
        oracle = run_stages(settings, records, len(events)).oracle
        half = len(records) // 2
        base = free_base_port((10, 11, 20))
        marker = tmp_path / "wedged"
        env = cli_env(
            settings,
            tmp_path / "home",
            LOGFLUME_METRICS_PORT=str(base),
            LOGFLUME_PROCESSOR_FAULT_WEDGE=wedge.point,
            LOGFLUME_PROCESSOR_FAULT_WEDGE_AFTER="20",
            LOGFLUME_PROCESSOR_FAULT_WEDGE_MARKER=str(marker),
            **wedge.env,
        )
        logs = tmp_path / "logs"
        run = spawn_run(env, tmp_path / "run.log", "--no-gateway", "--log-dir", str(logs))
        workers = [f"http://127.0.0.1:{base + 10 + i}" for i in range(WORKERS)]
        conn: asyncpg.Connection | None = None
        try:
            # Both workers live, ready (partitions assigned, tables recovered), and saying so.
            async def ready() -> bool:
                answers = [await _probe(f"{url}/readyz") for url in workers]
                return all(a is not None and a[0] == 200 for a in answers)

            await eventually(ready, timeout_s=120, interval_s=1, what="both workers ready")
            for url in workers:
                live = await _probe(f"{url}/healthz")
                assert live is not None and live[0] == 200, live
                assert live[1]["status"] == "ok" and live[1]["loop_heartbeat_age_s"] < 5
                status, body = await _probe(f"{url}/readyz") or (0, {})
                assert status == 200 and body["status"] == "ready" and body["assigned"], body
            async with httpx.AsyncClient(timeout=5) as http:
                text = (await http.get(f"{workers[0]}/metrics")).text
            assert 'logflume_stage_stalled{stage="entities"} 0.0' in text
            assert "logflume_stage_seconds_without_progress" in text

            # The first half: one worker wedges after 20 records of a stage.
            await publish(settings, _raw(settings.topics.events, records[:half]))

            async def wedged_once() -> bool:
                return await asyncio.to_thread(marker.exists)

            await eventually(wedged_once, timeout_s=120, interval_s=0.5, what="a stage to wedge")
            wedged_at = time.monotonic()
            await publish(settings, _raw(settings.topics.events, records[half:]))
            sent_at = time.monotonic()  # every partition has work from here on
            since = sent_at if wedge.point == "stream" else wedged_at

            # Stream: its watchdog sees lag without progress (the gauge grows), then exits.
            # Send: the send's bound ends it.
            exited = re.compile(rf"(process-\d) exited unexpectedly \(status {wedge.status}\)")
            still_seen = 0.0
            while (found := exited.search(_read(tmp_path / "run.log"))) is None:
                assert time.monotonic() - since < wedge.bound_s + 20, _report(tmp_path)
                for url in workers:
                    text = await _metrics(f"{url}/metrics")
                    if text:
                        seen = metric(text, "logflume_stage_seconds_without_progress")
                        still_seen = max(still_seen, seen)
                await asyncio.sleep(0.5)
            detected_s = time.monotonic() - since
            assert detected_s <= wedge.bound_s + 8, detected_s  # a beat, reading the last records
            wedged = found.group(1)
            worker_log = _read(logs / f"{wedged}.log")
            assert f"fault injection: stage entities wedged at {wedge.point}" in worker_log
            line = next(x for x in worker_log.splitlines() if wedge.line in x)
            assert "exiting without commit" in line, line
            if wedge.point == "stream":
                assert re.search(r"\(lag \d+, still for \d+ s\)", line), line
                assert still_seen >= 3, still_seen  # the gauge said so before the exit

            # Restarted by the supervisor; the pipeline ends at the oracle.
            conn = await asyncpg.connect(settings.dsn, timeout=10)
            await until_oracle(conn, oracle, timeout_s=240, report=lambda: _report(tmp_path))
            letters = await conn.fetchval("SELECT count(*) FROM dead_letters", timeout=30)
            assert letters == len(oracle.dead_letters) > 0

            supervisor = _read(tmp_path / "run.log")
            assert f"{wedged} restarted" in supervisor
            # Only the wedged worker exited: the other one was never taken for stuck.
            assert len(re.findall(r"exited unexpectedly", supervisor)) == 1, supervisor
            await eventually(ready, timeout_s=120, interval_s=1, what="both workers ready again")
            after = "the last records were sent" if wedge.point == "stream" else "the wedge"
            print(f"\nwedged {wedged} at {wedge.point}: exited {detected_s:.1f} s after {after}")

            run.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(run.wait, 90) == 0
        finally:
            if conn is not None:
                await conn.close()
            if run.poll() is None:
                run.kill()
                run.wait()
        assert not children(run.pid)


async def _metrics(url: str) -> str | None:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(url)).text
    except httpx.HTTPError:
        return None


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _report(tmp: Path) -> str:
    parts = [f"--- {p.name} ---\n{_read(p)[-4000:]}" for p in sorted(tmp.rglob("*.log"))]
    return "\n".join(parts)
