"""One generated history processed by the live pipeline (real Faust worker and sink as
subprocesses) per test module, on a database and topics of its own.

Size: ``LOGFLUME_REPLAY_TEST_EVENTS`` (default 20,000; the issue's demonstration used
1,000,000, see the README for the figures).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from kernel.settings import Settings
from tests.integration.replay.history import LivePipeline, produce_history
from tests.services import Services, scratch_environment, with_database

EVENTS = int(os.environ.get("LOGFLUME_REPLAY_TEST_EVENTS", "20000"))
PARTITIONS = 4


@dataclass
class LiveHistory:
    """The live database and topics after the pipeline drained a generated history."""

    settings: Settings
    services: Services
    home: Path
    events: int
    records: int
    extra_databases: list[str] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return self.settings.dsn

    def new_database(self, tag: str) -> str:
        """The DSN of a database that does not exist yet (dropped after the module)."""
        name = f"{self.settings.topic_prefix.replace('-', '_')}_{tag}"
        self.extra_databases.append(name)
        return with_database(self.services.dsn, name)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveHistory]:
    tag = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("replay")
    async with scratch_environment(
        services,
        f"lf_replay_{tag}",
        topic_prefix=f"lf_replay_{tag}",
        partitions=PARTITIONS,
        sink_group=f"lf_replay_{tag}-sink",
    ) as settings:
        events, records = await produce_history(settings, EVENTS)
        pipeline = LivePipeline(settings, tmp)
        pipeline.start()
        try:
            await pipeline.wait_drained(timeout_s=max(300, EVENTS / 200))
        finally:
            pipeline.stop()
        history = LiveHistory(settings, services, tmp / "home", events, records)
        try:
            yield history
        finally:
            admin = await asyncpg.connect(services.dsn, timeout=30)
            try:
                for name in history.extra_databases:
                    with contextlib.suppress(asyncpg.PostgresError):
                        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
