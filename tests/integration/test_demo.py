"""``logflume demo`` as a user runs it (a subprocess), on a small workload: it exits 0 and
the totals it prints are the ones in PostgreSQL, queried here."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from tests.integration.pipeline_env import cli_env, free_port, own_pipeline
from tests.services import REPO_ROOT, Services

pytestmark = pytest.mark.integration


async def test_demo_totals_match_postgres(services: Services, tmp_path: Path) -> None:
    async with own_pipeline(services, "demo") as settings:
        summary = tmp_path / "summary.json"
        env = cli_env(settings, tmp_path / "home", LOGFLUME_GATEWAY_PORT=str(free_port()))
        command = [sys.executable, "-m", "logflume", "demo", "--events", "3000", "--rate",
                   "1500", "--seed", "11", "--drain-timeout", "240",
                   "--summary-json", str(summary)]  # fmt: skip
        done = await asyncio.to_thread(subprocess.run, command, cwd=REPO_ROOT, env=env,
                                       capture_output=True, text=True, timeout=420)  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert "all totals match" in output
        assert "Kafka and PostgreSQL are still running" in output
        key_file = tmp_path / "home" / "demo-api-key"  # the key is in a file, never printed
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert key_file.read_text() not in output and str(key_file) in output
        result = json.loads(summary.read_text())
        assert result["match"] and result["drained"]
        assert result["trace_status"] == 200
        project, run_id = result["project"], result["run_id"]
        expected = result["expected"]
        for name in ("traces", "generations", "logs", "tokens"):
            assert f"{expected[name]:,}" in output  # the printed table shows the totals

        conn = await asyncpg.connect(settings.dsn, timeout=30)
        try:
            traces, tokens, cost = await conn.fetchrow(
                "SELECT count(*), sum(total_tokens), sum(cost) FROM traces WHERE project = $1",
                project,
            )
            generations = await conn.fetchval(
                "SELECT count(*) FROM generations WHERE project = $1", project
            )
            logs = await conn.fetchval("SELECT count(*) FROM logs WHERE project = $1", project)
            dead = await conn.fetchval(
                "SELECT count(*) FROM dead_letters WHERE event_id LIKE $1", f"{run_id}-%"
            )
            failed = await conn.fetchval(
                "SELECT count(*) FROM generations WHERE project = $1 AND error IS NOT NULL",
                project,
            )
        finally:
            await conn.close()
        stored = {"traces": traces, "generations": generations, "logs": logs,
                  "tokens": tokens, "dead_letters": dead}  # fmt: skip
        for name, value in stored.items():
            assert value == expected[name] == result["stored"][name], name
        assert abs(Decimal(cost) - Decimal(expected["cost"])) <= Decimal("0.000001")
        assert traces > 100 and dead >= 1 and failed >= 1
        assert f"${Decimal(cost):,.6f}" in output
        logs_dir = tmp_path / "home" / "logs" / f"demo-{run_id}"
        assert {p.name for p in logs_dir.iterdir()} == {"gateway.log", "process-1.log",
                                                         "sink-1.log"}  # fmt: skip


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


async def test_ctrl_c_stops_the_demo_and_its_pipeline(services: Services, tmp_path: Path) -> None:
    """SIGINT while the demo emits: exit 130, the pipeline it started stopped, no child left."""
    async with own_pipeline(services, "demoint") as settings:
        env = cli_env(settings, tmp_path / "home", LOGFLUME_GATEWAY_PORT=str(free_port()))
        command = [sys.executable, "-m", "logflume", "demo", "--events", "500000", "--rate",
                   "500", "--seed", "3"]  # fmt: skip
        demo = await asyncio.create_subprocess_exec(
            *command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert demo.stdout is not None
        output = b""
        try:
            async with asyncio.timeout(240):  # services up, pipeline started, emitting
                while b"(emitting) emitted" not in output or not _descendants(demo.pid):
                    line = await demo.stdout.readline()
                    assert line, output.decode()[-4000:]
                    output += line
            children = _descendants(demo.pid)
            assert len(children) >= 3, children  # gateway, worker, sink (and their helpers)
            demo.send_signal(signal.SIGINT)
            async with asyncio.timeout(120):
                output += await demo.stdout.read()
                returncode = await demo.wait()
        finally:
            if demo.returncode is None:
                demo.kill()
        text = output.decode()
        assert returncode == 130, text[-4000:]
        assert "interrupted" in text and "pipeline stopped" in text
        assert "all totals match" not in text  # no summary of a run cut short
        assert not _alive(children), children
