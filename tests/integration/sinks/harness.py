"""Running the real :class:`sinks.consumer.Sink` in a test: its environment (a private
database and topics), a task whose progress can be awaited, and polling helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from kernel.settings import Settings
from sinks.consumer import BatchReport, Sink

__all__ = ["RunningSink", "SinkEnv", "eventually", "running_sink"]


@dataclass(slots=True)
class SinkEnv:
    """One test's private database (migrated) and topics, and settings naming both."""

    settings: Settings
    conn: asyncpg.Connection  # to the test's database
    database: str

    def settings_with(self, **overrides: object) -> Settings:
        """The test's settings with some fields changed (validated again)."""
        return Settings.model_validate({**self.settings.model_dump(), **overrides})


@dataclass(slots=True)
class RunningSink:
    """A :class:`Sink` running in a task; counts the Kafka records it has written."""

    sink: Sink
    task: asyncio.Task[None]
    reports: list[BatchReport] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(r.records for r in self.reports)

    async def wait_records(self, count: int, timeout_s: float = 60.0) -> None:
        async def done() -> bool:
            if self.task.done():
                self.task.result()  # a sink that died: raise its error here
            return self.records >= count

        await eventually(done, timeout_s=timeout_s, what=f"the sink to write {count} records")

    async def stop(self) -> None:
        self.sink.stop()
        await asyncio.wait_for(self.task, timeout=30)


@contextlib.asynccontextmanager
async def running_sink(
    settings: Settings, *, group_id: str | None = None, sink_class: type[Sink] = Sink
) -> AsyncIterator[RunningSink]:
    """Run a sink (of ``sink_class``) in a task for the duration of the block."""
    reports: list[BatchReport] = []
    sink = sink_class(settings, on_batch=reports.append, group_id=group_id)
    running = RunningSink(sink, asyncio.create_task(sink.run()), reports)
    try:
        yield running
    finally:
        if not running.task.done():
            running.sink.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running.task, timeout=30)
        elif not running.task.cancelled():
            running.task.exception()  # retrieved: the test reports it where it matters


async def eventually(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    interval_s: float = 0.2,
    what: str = "condition",
) -> None:
    """Wait until ``check()`` is true, else fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(interval_s)
