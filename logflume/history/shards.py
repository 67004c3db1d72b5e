"""Stage 1 of a replay in worker processes, one per share of the raw topic's partitions.

Profiling a single-process replay (py-spy, README) put ~60% of its time in stage 1
(contract validation, merge, canonical entities) and showed that the event loop, blocked
by that work, also stalled the database writes. Stage 1's state is per partition (every
event of an entity routes to one partition), so, like Faust workers in one group, shard
processes that own disjoint partitions run it side by side with no shared state. Each
returns the newest output of every entity its records touched, JSON-encoded (the form
entities have on the live entities topic), and its dead letters; the parent runs stage 2
and the groups step and writes. The parent hands a shard its next batch as soon as it has
taken the previous result, so stage 1 of batch N+1 overlaps stage 2 and the writes of N.

Shards ignore SIGINT (the parent decides how to stop) and exit when their pipe closes, so
a SIGKILLed parent leaves no process behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from kernel.runtime import tune_gc
from kernel.settings import Topics
from processors.outcome import DeadLetter
from processors.sequential import SequentialStages

__all__ = ["ShardError", "Stage1Result", "Stage1Shards"]

Record = tuple[int, int, bytes]  # partition, offset, value


class ShardError(RuntimeError):
    """A shard process failed or died."""


@dataclass(slots=True)
class Stage1Result:
    entities: list[dict[str, Any]]
    dead_letters: list[DeadLetter]
    duplicates: int


def _serve(conn: Connection, prefix: str, partitions: int, max_event: int, max_record: int) -> None:
    """A shard's main loop: records in, (entities as JSON, dead letters, duplicates) out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_gc()
    stages = SequentialStages(
        Topics.with_prefix(prefix),
        partitions=partitions,
        max_event_bytes=max_event,
        max_record_bytes=max_record,
    )
    while True:
        try:
            records = conn.recv()
        except EOFError:
            return  # the parent is gone
        if records is None:
            return
        try:
            emitted = stages.entities_batch(records)
            conn.send((orjson.dumps(emitted.entities), emitted.dead_letters, emitted.duplicates))
        except Exception as exc:  # reported to the parent, which stops the replay
            conn.send(ShardError(f"stage 1 shard failed: {type(exc).__name__}: {exc}"))
            return


class Stage1Shards:
    """``count`` shard processes; partition ``p`` belongs to shard ``p % count``."""

    def __init__(
        self,
        count: int,
        *,
        topic_prefix: str,
        partitions: int,
        max_event_bytes: int,
        max_record_bytes: int,
    ) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited loop, sockets or threads
        self._conns: list[Connection] = []
        self._processes: list[Any] = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve,
                args=(child, topic_prefix, partitions, max_event_bytes, max_record_bytes),
                daemon=True,
                name="logflume-replay-stage1",
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)
        self._busy: list[bool] = [False] * count

    async def submit(self, records: list[Record]) -> None:
        """Hand each shard its share of ``records`` (call :meth:`collect` before the next)."""
        shares: list[list[Record]] = [[] for _ in self._conns]
        for record in records:
            shares[record[0] % len(shares)].append(record)
        loop = asyncio.get_running_loop()
        sends = []
        for index, (conn, share) in enumerate(zip(self._conns, shares, strict=True)):
            if share:
                self._busy[index] = True
                sends.append(loop.run_in_executor(None, conn.send, share))
        await asyncio.gather(*sends)

    async def collect(self) -> Stage1Result:
        """The results of the last :meth:`submit`, merged (shards own disjoint entities)."""
        loop = asyncio.get_running_loop()
        busy = [conn for conn, busy in zip(self._conns, self._busy, strict=True) if busy]
        self._busy = [False] * len(self._conns)
        try:
            answers = await asyncio.gather(*(loop.run_in_executor(None, c.recv) for c in busy))
        except EOFError:
            raise ShardError("a stage 1 shard process died") from None
        result = Stage1Result([], [], 0)
        for answer in answers:
            if isinstance(answer, ShardError):
                raise answer
            encoded, dead_letters, duplicates = answer
            result.entities += orjson.loads(encoded)
            result.dead_letters += dead_letters
            result.duplicates += duplicates
        return result

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
            conn.close()
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
