"""Helpers of the gateway's integration and end-to-end tests: a database and topics of
one's own, API keys, reading the raw topic, a gateway served on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway import GatewaySettings, create_app
from gateway.auth import create_key
from kernel.settings import Settings
from tests.services import Services, scratch_environment

PARTITIONS = 4


@dataclass
class Env:
    """A database and a topic prefix of one's own, and a key per project."""

    settings: Settings
    database: str
    keys: dict[str, str]


@contextlib.asynccontextmanager
async def own_env(services: Services, tag: str, projects: Iterable[str] = ("proj-a", "proj-b"),
                  **overrides: Any) -> AsyncIterator[Env]:  # fmt: skip
    """CREATE DATABASE + migrations, the pipeline's topics under a unique prefix, keys."""
    suffix = uuid.uuid4().hex[:8]
    database = f"lf_{tag}_{suffix}"
    async with scratch_environment(
        services,
        database,
        topic_prefix=f"lf-{tag}-{suffix}",
        partitions=PARTITIONS,
        sink_group=f"lf-{tag}-{suffix}-sink",
        **overrides,
    ) as settings:
        conn = await asyncpg.connect(settings.dsn, timeout=30)
        try:
            keys = {project: (await create_key(conn, project))[1] for project in projects}
        finally:
            await conn.close()
        yield Env(settings, database, keys)


async def raw_events(settings: Settings, want: set[str], timeout_s: float = 20.0) -> list[dict]:
    """Events of the raw topic, read from the start until every ``want`` event id is seen."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    seen: list[dict] = []
    try:
        tps = [TopicPartition(settings.topics.events, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with asyncio.timeout(timeout_s):
            while not want <= {e["event_id"] for e in seen}:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        value = orjson.loads(record.value)
                        seen += value if isinstance(value, list) else [value]
    finally:
        await consumer.stop()
    return seen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServedGateway:
    """The gateway under uvicorn on a loopback port, in a thread of its own."""

    def __init__(self, settings: Settings, options: GatewaySettings) -> None:
        self.port = free_port()
        options = options.model_copy(update={"port": self.port})
        config = uvicorn.Config(
            create_app(settings, options), host="127.0.0.1", port=self.port,
            log_level="warning", access_log=False, lifespan="on",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedGateway:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
