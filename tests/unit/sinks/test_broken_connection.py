"""A connection asyncpg left mid-operation is given up, not fatal: the sink reconnects and
writes the batch again (no network: the pool and the write are stand-ins).

asyncpg can leave a connection in the middle of an operation after a failure (its issue
784, open): the next statement then raises ``InternalClientError: cannot switch to state
15; another operation (2) is in progress``. The fault suite's PostgreSQL outage met it once
in CI: the sink exited and the events of the outage were never stored."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

import sinks.consumer as consumer_module
from kernel.dberrors import UNREACHABLE
from kernel.settings import Settings
from sinks.batch import Batch
from sinks.consumer import Sink
from sinks.writer import WriteResult


class _Pool:
    def __init__(self) -> None:
        self.terminated = False

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[object]:
        yield object()

    def terminate(self) -> None:
        self.terminated = True


class _Consumer:
    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()
        self.resumed = False

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("e", 0)}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.resumed = True

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        return {}


def test_it_counts_as_unreachable() -> None:
    assert issubclass(asyncpg.InternalClientError, UNREACHABLE)


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
        # Another sink upserted the same traces or sessions rows in another order.
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.SerializationError("could not serialize access"),
    ],
    ids=["broken-connection", "deadlock", "serialization"],
)
async def test_the_batch_is_written_again_on_a_new_connection(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    settings = Settings(topic_prefix="u", sink_retry_max_s=0.05, kafka_bootstrap_servers="x:1")
    sink = Sink(settings)
    pools: list[_Pool] = []

    async def new_pool() -> _Pool:  # as Sink._connection_pool: a new one once dropped
        if sink._pool is None:
            pools.append(_Pool())
            sink._pool = pools[-1]  # type: ignore[assignment]
        return pools[-1]

    writes: list[int] = []

    async def write_batch(conn: object, batch: Batch, *, staged: bool) -> WriteResult:
        writes.append(len(pools))
        if len(writes) == 1:
            raise failure
        return WriteResult(rows={"logs": 1})

    monkeypatch.setattr(sink, "_connection_pool", new_pool)
    monkeypatch.setattr(consumer_module, "write_batch", write_batch)
    kafka = _Consumer()
    await sink._write(kafka, Batch())  # type: ignore[arg-type]
    assert writes == [1, 2]  # again, on a connection of a new pool
    assert pools[0].terminated
    assert kafka.paused and kafka.resumed
