"""Which trace a Maxim span or generation belongs to (see :mod:`gateway.maxim`).

The gateway records every node it accepts in ``gateway_nodes`` before it answers, so the
later lines of that node (a generation's result, a span's end), in any later request and
in any gateway process, find their trace. Nodes the pipeline stored from other producers
(the SDK, ``/v1/events``) are found in ``spans`` and ``generations``. A bounded LRU in
front keeps the common case (result shortly after create) free of queries.

While PostgreSQL is unreachable, lookups answer from the LRU alone (a line whose node is
not there is held, :mod:`gateway.deferred`), and the nodes to record wait in memory (and
in the LRU) until :meth:`PgNodeIndex.flush` writes them. Losing those with the process is
harmless: the pipeline stores the same nodes in ``spans`` and ``generations``, where the
lookup and the sweeper find them too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Protocol

import asyncpg

from .outage import UNAVAILABLE, DatabaseWatch

__all__ = ["MemoryNodeIndex", "NodeIndex", "PgNodeIndex"]

_LOOKUP = """
SELECT id, trace_id FROM gateway_nodes WHERE project = $1 AND id = ANY($2::text[])
UNION ALL
SELECT id, trace_id FROM spans WHERE project = $1 AND id = ANY($2::text[])
UNION ALL
SELECT id, trace_id FROM generations WHERE project = $1 AND id = ANY($2::text[])
"""

_RECORD = """
INSERT INTO gateway_nodes (project, id, kind, trace_id)
SELECT $1, u.id, u.kind, u.trace_id FROM unnest($2::text[], $3::text[], $4::text[])
    AS u(id, kind, trace_id)
ON CONFLICT (project, id) DO NOTHING
"""


class NodeIndex(Protocol):
    async def traces_of(self, project: str, ids: Iterable[str]) -> dict[str, str]:
        """``node id -> trace id`` for the ids that are known."""
        ...

    async def record(self, project: str, nodes: Mapping[str, tuple[str, str]]) -> None:
        """Remember ``node id -> (kind, trace id)``; the first record of a node wins."""
        ...

    async def flush(self) -> int:
        """Write what was recorded while the database was away; how many nodes."""
        ...


class _Lru:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], str] = OrderedDict()

    def get(self, key: tuple[str, str]) -> str | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple[str, str], value: str) -> None:
        if self._capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


class PgNodeIndex:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cache_size: int,
        timeout_s: float = 10.0,
        watch: DatabaseWatch | None = None,
    ) -> None:
        self._pool = pool
        self._cache = _Lru(cache_size)
        self._timeout_s = timeout_s
        self._watch = watch or DatabaseWatch()
        # Nodes accepted while the database was away: project -> id -> (kind, trace id).
        self._pending: dict[str, dict[str, tuple[str, str]]] = {}

    async def traces_of(self, project: str, ids: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        missing: list[str] = []
        for node in ids:
            trace = self._cache.get((project, node))
            if trace is None:
                missing.append(node)
            else:
                found[node] = trace
        if missing:
            try:
                self._watch.check()
                rows = await self._pool.fetch(_LOOKUP, project, missing, timeout=self._timeout_s)
            except UNAVAILABLE as exc:
                self._watch.failed("maxim_nodes", exc)
                return found  # the others are held until the database answers
            for row in rows:
                found.setdefault(row["id"], row["trace_id"])
                self._cache.put((project, row["id"]), row["trace_id"])
        return found

    async def record(self, project: str, nodes: Mapping[str, tuple[str, str]]) -> None:
        fresh = {k: v for k, v in nodes.items() if self._cache.get((project, k)) is None}
        if not fresh:
            return
        try:
            self._watch.check()
            await self._write(project, fresh)
        except UNAVAILABLE as exc:
            self._watch.failed("maxim_nodes", exc)
            self._pending.setdefault(project, {}).update(fresh)
        for node, (_, trace) in fresh.items():
            self._cache.put((project, node), trace)

    async def _write(self, project: str, nodes: Mapping[str, tuple[str, str]]) -> None:
        await self._pool.execute(
            _RECORD,
            project,
            list(nodes),
            [kind for kind, _ in nodes.values()],
            [trace for _, trace in nodes.values()],
            timeout=self._timeout_s,
        )

    async def flush(self) -> int:
        """Write the nodes recorded while the database was away (the sweeper calls this;
        raises while it still is); how many."""
        written = 0
        while self._pending:
            project, nodes = self._pending.popitem()
            try:
                await self._write(project, nodes)
            except BaseException:
                waiting = self._pending.setdefault(project, {})
                for node, value in nodes.items():
                    waiting.setdefault(node, value)
                raise
            written += len(nodes)
        return written


class MemoryNodeIndex:
    """The in-memory twin (unit tests)."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, str], tuple[str, str]] = {}

    async def traces_of(self, project: str, ids: Iterable[str]) -> dict[str, str]:
        return {n: self.nodes[(project, n)][1] for n in ids if (project, n) in self.nodes}

    async def record(self, project: str, nodes: Mapping[str, tuple[str, str]]) -> None:
        for node, value in nodes.items():
            self.nodes.setdefault((project, node), value)

    async def flush(self) -> int:
        return 0
