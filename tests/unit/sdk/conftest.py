"""Fixtures of the SDK unit tests: clients against in-memory transports, no network."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from producers.sdk import Client, MemoryTransport, SendFailure, Transport
from producers.sdk.encoding import Encoded

MakeClient = Callable[..., Client]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """Build clients (closed at the end) with a spool under ``tmp_path`` unless told."""
    clients: list[Client] = []

    def make(transport: Transport | None = None, **overrides: Any) -> Client:
        overrides.setdefault("spool_dir", tmp_path / "spool")
        overrides.setdefault("project", "unit")
        overrides.setdefault("flush_interval_ms", 5)
        overrides.setdefault("retry_backoff_max_s", 0.05)
        overrides.setdefault("warn_interval_s", 3600)
        client = Client(transport=transport or MemoryTransport(partitions=6), **overrides)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=1)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class FlakyTransport(MemoryTransport):
    """Fails the first ``failures`` sends (retriable), remembering what it was given."""

    def __init__(self, failures: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures
        self.failed_batches: list[list[Encoded]] = []

    async def send(self, events: Sequence[Encoded]) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.failed_batches.append(list(events))
            raise SendFailure("simulated outage", events)
        await super().send(events)
