"""Benchmark of the gateway: accepted events/s for single-event and batch requests.

Runs ``logflume gateway`` as a subprocess (``--workers`` processes) against the running
services (``logflume up``, or ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``), on topics of
its own (created and deleted here) and a key of its own (revoked at the end), and drives
it from this process with ``--concurrency`` HTTP/1.1 keep-alive connections (a minimal
asyncio client: httpx would be the bottleneck). Every
counted event was answered 2xx, i.e. acknowledged by Kafka (acks=all) or spooled.

Scenarios (each ``--seconds`` long):

* ``single``: ``POST /v1/events`` with one event per request;
* ``humanloop``: ``POST /v5/prompts/log``, one log per request (what the Humanloop SDK does);
* ``batch``: ``POST /v1/events`` with ``--batch`` events per request.

Usage::

    python bench/gateway_bench.py [--seconds 10] [--concurrency 32] [--batch 100]
        [--workers 1] [--port 8399]

The client shares the machine's cores with the server: on 2 cores the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from gateway.auth import create_key, revoke_key
from kernel.settings import Settings, child_environment
from kernel.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent


def _log_event(n: int) -> dict[str, Any]:
    return {
        "event_id": f"evt_{uuid.uuid4().hex}", "type": "log",
        "ts": datetime.now(UTC).isoformat(),
        "body": {"id": f"data_{uuid.uuid4().hex}", "path": "bench/prompt",
                 "messages": [{"role": "user", "content": f"question {n}"}],
                 "output": "an answer of a few words", "prompt_tokens": 42,
                 "output_tokens": 7, "metadata": {"n": n}},
    }  # fmt: skip


def _humanloop_log(n: int) -> dict[str, Any]:
    return {"path": "bench/prompt", "prompt": {"model": "gpt-4o", "provider": "openai"},
            "messages": [{"role": "user", "content": f"question {n}"}],
            "output": "an answer of a few words", "prompt_tokens": 42,
            "output_tokens": 7}  # fmt: skip


class _Connection:
    """A minimal HTTP/1.1 keep-alive client: httpx costs more CPU per request than the
    gateway does (~270 requests/s from 32 connections here), which would measure the
    client, not the server."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self._host, self._port = host, port
        self._head = f"Host: {host}\r\nX-API-KEY: {key}\r\ncontent-type: application/json\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        request = f"POST {path} HTTP/1.1\r\n{self._head}content-length: {len(body)}\r\n\r\n"
        self._writer.write(request.encode() + body)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def _drive(
    port: int, key: str, scenario: str, seconds: float, concurrency: int, batch: int
) -> tuple[int, int, list[float]]:
    """(accepted events, requests, latencies in ms) over ``seconds``."""
    accepted = requests = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal accepted, requests
        connection = _Connection("127.0.0.1", port, key)
        n = 0
        try:
            while time.monotonic() < deadline:
                n += 1
                if scenario == "humanloop":
                    path, body, count = "/v5/prompts/log", orjson.dumps(_humanloop_log(n)), 1
                else:
                    size = batch if scenario == "batch" else 1
                    path, count = "/v1/events", size
                    body = orjson.dumps([_log_event(n * size + i) for i in range(size)])
                started = time.perf_counter()
                status, answer = await connection.post(path, body)
                latencies.append((time.perf_counter() - started) * 1000)
                requests += 1
                if status in (200, 202):
                    accepted += count
                elif status == 207:
                    accepted += orjson.loads(answer)["accepted"]
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted, requests, latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _wait_up(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            await asyncio.sleep(0.2)


async def main(args: argparse.Namespace) -> None:
    prefix = f"bench-gw-{uuid.uuid4().hex[:8]}"
    settings = Settings(topic_prefix=prefix)
    await ensure_topics(settings)
    conn = await asyncpg.connect(settings.dsn, timeout=10)
    record, key = await create_key(conn, "bench", "gateway_bench")
    url = f"http://127.0.0.1:{args.port}"
    spool = Path(tempfile.mkdtemp(prefix=f"{prefix}-spool-"))
    env = child_environment(
        {"LOGFLUME_TOPIC_PREFIX": prefix, "LOGFLUME_GATEWAY_SPOOL_DIR": str(spool)}
    )
    command = [sys.executable, "-c", "from logflume.cli import main; main()", "gateway",
               "--port", str(args.port), "--workers", str(args.workers)]  # fmt: skip
    server = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await _wait_up(url)
        print(f"gateway: {args.workers} worker(s); client: {args.concurrency} connections, "
              f"{args.seconds:.0f} s per scenario; {os.cpu_count()} cores")  # fmt: skip
        for scenario in ("single", "humanloop", "batch"):
            await _drive(args.port, key, scenario, 1.0, args.concurrency, args.batch)  # warm-up
            accepted, requests, latencies = await _drive(
                args.port, key, scenario, args.seconds, args.concurrency, args.batch
            )
            per_request = args.batch if scenario == "batch" else 1
            print(
                f"{scenario:<10} {per_request:>4} event(s)/request: "
                f"{accepted / args.seconds:>9,.0f} accepted events/s  "
                f"{requests / args.seconds:>7,.0f} requests/s  "
                f"latency p50 {_pct(latencies, 0.5):.1f} ms, p99 {_pct(latencies, 0.99):.1f} ms"
            )
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)
        shutil.rmtree(spool, ignore_errors=True)
        await revoke_key(conn, record.id)
        await conn.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics(list(settings.topics.all()))
        finally:
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=8399)
    asyncio.run(main(parser.parse_args()))
