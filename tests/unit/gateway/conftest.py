"""The gateway's app over in-memory twins (no network): a key per project, a transport
that keeps what was published."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def gateway_env(
    tmp_path: Path,
    *,
    nodes: MemoryNodeIndex | None = None,
    held: MemoryHeldLines | None = None,
    settings: Settings | None = None,
    max_body_bytes: int = 64 * 1024,
    raise_server_exceptions: bool = True,
) -> Iterator[Env]:
    """The app over in-memory twins (``nodes``/``held``: twins of one's own)."""
    transport = MemoryTransport(partitions=4)
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 16, fsync="batch")
    held = held or MemoryHeldLines()
    letters = MemoryTransport(partitions=4, packed=False)
    parts = Components(transport=transport, spool=spool, keys=DictKeys(),
                       nodes=nodes or MemoryNodeIndex(), held=held,
                       dead_letter_transport=letters)  # fmt: skip
    options = GatewaySettings(max_body_bytes=max_body_bytes, linger_ms=0, held_sweep_s=0)
    app = create_app(settings or Settings(max_event_bytes=4096), options, parts)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield Env(client, transport, held, letters)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with gateway_env(tmp_path) as built:
        yield built
