"""What the demo reads back while it runs: stage lags from Kafka, totals from PostgreSQL,
and the rule that says the pipeline has drained.

Totals are the run's own (its project; dead letters by the run's ``event_id`` prefix), so
a demo gives the same answer on a fresh database and on one that holds earlier runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

from kernel.lag import LagReader, pipeline_groups
from kernel.settings import Settings

from .workload import Totals

__all__ = ["Drain", "Snapshot", "read_totals", "snapshot"]

_TOTALS_SQL = """
SELECT (SELECT count(*) FROM traces WHERE project = $1) AS traces,
       (SELECT coalesce(sum(total_tokens), 0) FROM traces WHERE project = $1) AS tokens,
       (SELECT coalesce(sum(cost), 0) FROM traces WHERE project = $1) AS cost,
       (SELECT count(*) FROM generations WHERE project = $1) AS generations,
       (SELECT count(*) FROM logs WHERE project = $1) AS logs,
       (SELECT count(*) FROM dead_letters WHERE event_id LIKE $2) AS dead_letters
"""


async def read_totals(conn: asyncpg.Connection, project: str, run_id: str) -> Totals:
    """The run's totals as stored (trace rollups carry every member's tokens and cost)."""
    row = await conn.fetchrow(_TOTALS_SQL, project, f"{run_id}-%", timeout=30)
    assert row is not None
    return Totals(
        traces=row["traces"],
        generations=row["generations"],
        logs=row["logs"],
        tokens=int(row["tokens"]),
        cost=Decimal(row["cost"]),
        dead_letters=row["dead_letters"],
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One look at the pipeline: lag per stage (None: not readable) and stored totals."""

    at: float
    lags: dict[str, int] | None
    totals: Totals


async def snapshot(
    reader: LagReader, conn: asyncpg.Connection, settings: Settings, project: str, run_id: str
) -> Snapshot:
    lags = await reader.stage_lags(pipeline_groups(settings))
    totals = await read_totals(conn, project, run_id)
    return Snapshot(time.monotonic(), lags, totals)


@dataclass(slots=True)
class Drain:
    """Drained = every stage's lag is 0 and the stored totals have not changed for
    ``stable_s``. Lags are read upstream first and each stage commits only after its
    outputs are written, so zero lags read in that order mean nothing is in flight; the
    stable totals cover the sink's last transaction."""

    stable_s: float = 3.0
    _since: float | None = None
    _last: Totals | None = field(default=None)

    def update(self, snap: Snapshot) -> bool:
        idle = snap.lags is not None and all(v == 0 for v in snap.lags.values())
        if not idle or snap.totals != self._last:
            self._last = snap.totals
            self._since = snap.at if idle else None
            return False
        if self._since is None:
            self._since = snap.at
        return snap.at - self._since >= self.stable_s
