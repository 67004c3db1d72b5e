"""Maxim commit lines held until the node they name is known (table ``gateway_held_lines``).

``maxim-py`` uploads batches concurrently, so ``generation{id=g1,action=result,...}`` can
reach the gateway before ``span{id=s1,action=add-generation,data={"id": "g1"}}`` has told
it which trace ``g1`` belongs to. Every wire event below a trace carries its trace id, so
such a line cannot be published yet; rejecting it would lose an event the SDK believes
delivered. The gateway therefore writes it here before answering, and
:mod:`gateway.release` publishes it once its node is recorded.

:meth:`HeldLines.claim` hands out the lines waiting for some nodes inside a transaction
that deletes them only if the block (translate and publish) succeeds, so a crash or a
failed publish leaves them held for the next attempt. Concurrent claims never get the same
line (``DELETE ... RETURNING`` locks the rows), and a line published twice anyway would
carry the same event id and be dropped by stage 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

__all__ = ["HeldLine", "HeldLines", "MemoryHeldLines", "PgHeldLines", "WaitingNode"]

# Dead letters of expired lines: not a Kafka origin, so a topic name of their own.
EXPIRED_TOPIC = "gateway.held"


@dataclass(frozen=True, slots=True)
class HeldLine:
    project: str
    event_id: str
    node_id: str
    line: str
    line_index: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class WaitingNode:
    project: str
    node_id: str


class HeldLines(Protocol):
    async def hold(self, lines: Sequence[HeldLine]) -> None:
        """Store the lines durably (a line already held is kept once)."""
        ...

    def claim(
        self, project: str, node_ids: Iterable[str]
    ) -> contextlib.AbstractAsyncContextManager[list[HeldLine]]:
        """The lines waiting for ``node_ids``, deleted when the block exits without error."""
        ...

    async def resolvable(self, limit: int) -> list[WaitingNode]:
        """Nodes with held lines that are known by now (recorded by another gateway, or
        stored by the pipeline from another producer)."""
        ...

    async def expire(self, older_than_s: float) -> int:
        """Move lines held longer than ``older_than_s`` to ``dead_letters``; how many."""
        ...


_HOLD = """
INSERT INTO gateway_held_lines (project, event_id, node_id, line, line_index, received_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[],
                     $6::timestamptz[])
ON CONFLICT (project, event_id) DO NOTHING
"""

_CLAIM = """
DELETE FROM gateway_held_lines WHERE project = $1 AND node_id = ANY($2::text[])
RETURNING project, event_id, node_id, line, line_index, received_at
"""

_RESOLVABLE = """
SELECT DISTINCT h.project, h.node_id FROM gateway_held_lines h
WHERE EXISTS (SELECT 1 FROM gateway_nodes n WHERE n.project = h.project AND n.id = h.node_id)
   OR EXISTS (SELECT 1 FROM spans s WHERE s.project = h.project AND s.id = h.node_id)
   OR EXISTS (SELECT 1 FROM generations g WHERE g.project = h.project AND g.id = h.node_id)
LIMIT $1
"""

_EXPIRE = f"""
WITH gone AS (
    DELETE FROM gateway_held_lines WHERE held_at < now() - make_interval(secs => $1)
    RETURNING seq, event_id, node_id, line
)
INSERT INTO dead_letters (topic, "partition", "offset", event_index, event_id, reason, raw)
SELECT '{EXPIRED_TOPIC}', 0, seq, 0, event_id,
       'node ' || node_id || ' was never created: its create line did not arrive',
       convert_to(line, 'UTF8')
FROM gone
ON CONFLICT DO NOTHING
"""


class PgHeldLines:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 10.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def hold(self, lines: Sequence[HeldLine]) -> None:
        if not lines:
            return
        await self._pool.execute(
            _HOLD,
            [h.project for h in lines],
            [h.event_id for h in lines],
            [h.node_id for h in lines],
            [h.line for h in lines],
            [h.line_index for h in lines],
            [h.received_at for h in lines],
            timeout=self._timeout_s,
        )

    @contextlib.asynccontextmanager
    async def claim(self, project: str, node_ids: Iterable[str]) -> AsyncIterator[list[HeldLine]]:
        ids = sorted(set(node_ids))
        if not ids:
            yield []
            return
        async with self._pool.acquire(timeout=self._timeout_s) as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, project, ids, timeout=self._timeout_s)
            yield [HeldLine(**dict(row)) for row in rows]

    async def resolvable(self, limit: int) -> list[WaitingNode]:
        rows = await self._pool.fetch(_RESOLVABLE, limit, timeout=self._timeout_s)
        return [WaitingNode(row["project"], row["node_id"]) for row in rows]

    async def expire(self, older_than_s: float) -> int:
        status = await self._pool.execute(_EXPIRE, older_than_s, timeout=self._timeout_s)
        return int(status.rsplit(" ", 1)[-1])


class MemoryHeldLines:
    """The in-memory twin (unit tests): the same claim-then-delete-on-success rule."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], HeldLine] = {}

    async def hold(self, lines: Sequence[HeldLine]) -> None:
        for held in lines:
            self.lines.setdefault((held.project, held.event_id), held)

    @contextlib.asynccontextmanager
    async def claim(self, project: str, node_ids: Iterable[str]) -> AsyncIterator[list[HeldLine]]:
        wanted = set(node_ids)
        keys = [k for k, h in self.lines.items() if h.project == project and h.node_id in wanted]
        claimed = [self.lines.pop(k) for k in keys]
        try:
            yield claimed
        except BaseException:
            for key, held in zip(keys, claimed, strict=True):
                self.lines.setdefault(key, held)
            raise

    async def resolvable(self, limit: int) -> list[WaitingNode]:
        """Every waiting node (a superset: :func:`gateway.release.release` checks)."""
        waiting = {(h.project, h.node_id) for h in self.lines.values()}
        return [WaitingNode(p, n) for p, n in sorted(waiting)][:limit]

    async def expire(self, older_than_s: float) -> int:
        return 0
