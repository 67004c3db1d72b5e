"""One real pipeline for the bad-input suite: the gateway on a loopback port, a Faust worker
and a sink as subprocesses, on a database and topics of their own; and a ledger of what
the tests sent, from which the last test builds the oracle of the final tables."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest_asyncio

from gateway import GatewaySettings
from logflume.synthetic import generate_events
from producers.contract import ContractError, parse_event
from tests.integration.gateway.helpers import Env, ServedGateway, own_env
from tests.processes import PipelineProcesses
from tests.services import Services

__all__ = ["BadInputPipeline", "ExpectedLetter"]


@dataclass(frozen=True, slots=True)
class ExpectedLetter:
    """A dead letter the raw-topic test expects at its origin, with field and reason."""

    partition: int
    offset: int
    index: int
    field: str
    reason: str


@dataclass
class BadInputPipeline:
    env: Env
    url: str
    processes: PipelineProcesses
    # Valid events still to send, split between the two paths (disjoint halves of one
    # synthetic stream, so updates and children may cross from one path to the other).
    gateway_pool: list[bytes]
    raw_pool: list[bytes]
    # What was sent: valid events through the gateway (as published), raw-topic records.
    gateway_sent: list[bytes] = field(default_factory=list)
    raw_records: list[tuple[int, bytes]] = field(default_factory=list)
    letters: list[ExpectedLetter] = field(default_factory=list)

    def take_valid(self, count: int) -> list[bytes]:
        """The next ``count`` valid events for the gateway path."""
        taken, self.gateway_pool[:count] = self.gateway_pool[:count], []
        return taken


def _valid(raw: bytes) -> bool:
    try:
        parse_event(raw)
    except ContractError:
        return False
    return True


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def bad_pipeline(services: Services) -> AsyncIterator[BadInputPipeline]:
    valid = [raw for raw in generate_events(1200, seed=23) if _valid(raw)]
    half = len(valid) // 2
    tmp = Path(tempfile.mkdtemp(prefix="lf-bad-input-"))
    async with own_env(services, "bad", projects=("acme", "globex"), sink_linger_ms=50) as env:
        processes = PipelineProcesses(env.settings, tmp)
        processes.start_worker("bad-w1")
        processes.start_sink("bad-s1")
        options = GatewaySettings(spool_dir=tmp / "spool", key_cache_ttl_s=60)
        try:
            with ServedGateway(env.settings, options) as served:
                yield BadInputPipeline(env, served.url, processes, valid[:half], valid[half:])
        finally:
            processes.stop_all()
            print(processes.logs())
