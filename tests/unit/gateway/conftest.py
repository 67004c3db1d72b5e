"""The gateway's app over in-memory twins (no network): a key per project, a transport
that keeps what was published."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from gateway import Components, GatewaySettings, create_app
from gateway.held import MemoryHeldLines
from gateway.nodes import MemoryNodeIndex
from kernel.settings import Settings
from producers.sdk import MemoryTransport, Spool

KEYS = {"key-a": "proj-a", "key-b": "proj-b"}
A = {"X-API-KEY": "key-a"}


class DictKeys:
    async def project_for(self, key: str) -> str | None:
        return KEYS.get(key)


class Env:
    def __init__(
        self,
        client: TestClient,
        transport: MemoryTransport,
        held: MemoryHeldLines,
        letters: MemoryTransport,
    ) -> None:
        self.client = client
        self.transport = transport
        self.held = held
        self.letters = letters

    def sent(self) -> list[dict]:
        return self.transport.bodies()

    def dead_letters(self) -> list[dict]:
        """Every dead-letter record the gateway published (one JSON object each)."""
        return [orjson.loads(record.value) for record in self.letters.records]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    transport = MemoryTransport(partitions=4)
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 16, fsync="batch")
    held = MemoryHeldLines()
    letters = MemoryTransport(partitions=4, packed=False)
    parts = Components(transport=transport, spool=spool, keys=DictKeys(), nodes=MemoryNodeIndex(),
                       held=held, dead_letter_transport=letters)  # fmt: skip
    settings = Settings(max_event_bytes=4096)
    options = GatewaySettings(max_body_bytes=64 * 1024, linger_ms=0, held_sweep_s=0)
    app = create_app(settings, options, parts)
    with TestClient(app) as client:
        yield Env(client, transport, held, letters)
