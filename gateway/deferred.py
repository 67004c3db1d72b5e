"""Work that needs PostgreSQL, kept on the gateway's disk while PostgreSQL is unreachable.

Two kinds, both accepted with a 2xx before the database has seen them:

- a **held Maxim line** (:class:`~gateway.held.HeldLine`) whose node is not known yet,
  which would have gone to ``gateway_held_lines``;
- a **version to resolve**: a log sent without prompt details or ``version_id`` belongs to
  the newest stored version of its Prompt (in its environment), which only PostgreSQL
  knows. The log itself is published at once with ``version_id`` null; once the database
  answers, the version is looked up and a ``log`` event carrying only the log's identity
  and that ``version_id`` is published, which stage 1 merges into the log (a log's
  ``version_id`` is kept from the first event that gives one).

Items are frames of a :class:`~producers.sdk.Spool` (fsynced before the answer, one slot
per process, a crashed process's slot adopted by the next), read back in order by the
sweeper (:func:`gateway.release.drain_deferred`) and deleted once the table holds the lines
and Kafka (or the events' spool) holds the versions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from producers.sdk import Spool
from producers.sdk.spool import SpoolChunk, SpoolError

from .errors import Unavailable
from .held import HeldLine

__all__ = ["Deferred", "DeferredItems", "VersionToResolve"]

_READ_ITEMS = 500
_READ_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class VersionToResolve:
    project: str
    log_id: str
    reference_id: str | None
    prompt_id: str
    environment: str | None


@dataclass(slots=True)
class DeferredItems:
    """One chunk read back: ack it (:meth:`Deferred.ack`) once its work is done."""

    held: list[HeldLine]
    versions: list[VersionToResolve]
    chunk: SpoolChunk


class Deferred:
    """The local spool of deferred work; without a spool, deferring answers 503."""

    def __init__(self, spool: Spool | None) -> None:
        self._spool = spool

    def has_unsent(self) -> bool:
        return self._spool is not None and self._spool.has_unsent()

    async def _append(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        if not items:
            return
        if self._spool is None:
            raise Unavailable("PostgreSQL is unreachable and the gateway has no spool")
        frames = [(project.encode(), orjson.dumps(item)) for project, item in items]
        try:
            written = await asyncio.to_thread(self._spool.append, frames)
        except SpoolError:
            written = 0
        if written < len(frames):
            raise Unavailable("PostgreSQL is unreachable and the local spool is full")

    async def hold(self, lines: Sequence[HeldLine]) -> None:
        """Keep Maxim lines until ``gateway_held_lines`` can take them (durable on return)."""
        await self._append(
            [(h.project, {"kind": "held", "event_id": h.event_id, "node_id": h.node_id,
                          "line": h.line, "line_index": h.line_index,
                          "received_at": h.received_at.isoformat()}) for h in lines]
        )  # fmt: skip

    async def resolve_versions(self, versions: Sequence[VersionToResolve]) -> None:
        """Resolve these logs' versions once PostgreSQL answers (durable on return)."""
        await self._append(
            [(v.project, {"kind": "version", "log_id": v.log_id, "reference_id": v.reference_id,
                          "prompt_id": v.prompt_id, "environment": v.environment})
             for v in versions]
        )  # fmt: skip

    async def read(self) -> DeferredItems | None:
        """The next chunk in order, or None when nothing waits."""
        spool = self._spool
        if spool is None or not spool.has_unsent():
            return None
        spool.rewind()  # a chunk not acked (its work failed) is read again
        chunk = await asyncio.to_thread(spool.read, _READ_ITEMS, _READ_BYTES)
        items = DeferredItems([], [], chunk)
        for key, raw in chunk.events:
            project, item = key.decode(), orjson.loads(raw)
            if item["kind"] == "held":
                received = datetime.fromisoformat(item["received_at"])
                items.held.append(
                    HeldLine(project, item["event_id"], item["node_id"], item["line"],
                             item["line_index"], received)
                )  # fmt: skip
            else:
                items.versions.append(
                    VersionToResolve(project, item["log_id"], item["reference_id"],
                                     item["prompt_id"], item["environment"])
                )  # fmt: skip
        return items

    def ack(self, items: DeferredItems) -> None:
        assert self._spool is not None
        self._spool.ack(items.chunk)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
