"""The whole pipeline for the end-to-end tests: official SDK -> gateway -> Kafka -> Faust
workers -> Kafka -> sink -> PostgreSQL -> gateway's read API.

One session-wide pipeline on topics and a database of its own: the real Faust worker
(``python -m processors.worker``, all three stages) and the real sink (``logflume sink``)
as subprocesses, and the gateway under uvicorn on a loopback port. Their logs go to files
that a failing test prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio
from maxim import Maxim

from gateway import GatewaySettings
from tests.integration.gateway.helpers import Env, ServedGateway, own_env
from tests.services import REPO_ROOT, Services

T = TypeVar("T")

WORKER_ENV = {
    "LOGFLUME_PROCESSOR_SESSION_TIMEOUT_S": "6",
    "LOGFLUME_PROCESSOR_HEARTBEAT_INTERVAL_S": "1",
    "LOGFLUME_PROCESSOR_COMMIT_INTERVAL_S": "1",
}


@dataclass
class Pipeline:
    env: Env
    url: str
    logs: list[Path]

    def key(self, project: str = "proj-a") -> str:
        return self.env.keys[project]

    def get(self, path: str, project: str = "proj-a", **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers={"X-API-KEY": self.key(project)})

    def tails(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
                         for p in self.logs if p.exists())  # fmt: skip


def eventually(probe: Callable[[], T | None], timeout_s: float = 120.0, every_s: float = 0.3) -> T:
    """The first non-None result of ``probe`` (the pipeline is asynchronous; the first
    result waits for the Faust workers to join their group and recover their tables, which
    took up to ~45 s on a loaded 2-core machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not produce the expected state in time")
        time.sleep(every_s)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pipeline(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("e2e")
    async with own_env(services, "e2e", sink_linger_ms=50) as env:
        s = env.settings
        base = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": s.bootstrap_servers,
            "DATABASE_URL": s.dsn,
            "LOGFLUME_TOPIC_PREFIX": s.topic_prefix,
            "LOGFLUME_PARTITIONS": str(s.partitions),
            "LOGFLUME_HOME": str(tmp / "home"),
            "LOGFLUME_SINK_GROUP": s.sink_group,
            "LOGFLUME_SINK_LINGER_MS": "50",
        }
        worker_log, sink_log = tmp / "worker.log", tmp / "sink.log"
        worker = _spawn([sys.executable, "-m", "processors.worker"],
                        {**base, **WORKER_ENV, "LOGFLUME_PROCESSOR_WORKER_NAME": "e2e"},
                        worker_log)  # fmt: skip
        sink = _spawn([sys.executable, "-c", "from logflume.cli import main; main()", "sink"],
                      base, sink_log)  # fmt: skip
        options = GatewaySettings(spool_dir=tmp / "spool", key_cache_ttl_s=60)
        try:
            with ServedGateway(s, options) as served:
                yield Pipeline(env, served.url, [worker_log, sink_log])
        finally:
            for process in (worker, sink):
                process.terminate()
            for process in (worker, sink):
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture(scope="session")
def maxim(pipeline: Pipeline) -> Iterator[Maxim]:
    """The session's one maxim-py client (it allows one per process; each test makes its own
    logger and flushes it)."""
    client = Maxim({"api_key": pipeline.key(), "base_url": pipeline.url})
    try:
        yield client
    finally:
        client.cleanup()
