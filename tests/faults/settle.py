"""Waiting for a fault test's tables to equal the oracle, and the evidence when they don't."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import asyncpg
import pytest

from kernel.settings import Settings
from tests.faults.scratch import group_lag
from tests.integration.sinks.harness import eventually
from tests.integration.sinks.stream import Oracle, oracle_mismatches
from tests.processes import PipelineProcesses

__all__ = ["settle_at_oracle"]


class _Timeline(Protocol):
    def __str__(self) -> str: ...


async def settle_at_oracle(
    settings: Settings,
    oracle: Oracle,
    processes: PipelineProcesses,
    timeline: _Timeline,
    evidence: Path,
    *,
    timeout_s: float,
    interval_s: float = 3.0,
) -> asyncpg.Connection:
    """Wait until the tables equal the oracle (reconnecting while PostgreSQL restarts) and
    return the connection. Otherwise fail with the differences, whether the pipeline
    stalled (records left unread by a group) or settled wrong, the timeline, the processes'
    logs and, taken while they still run, their stacks (written to ``evidence``)."""
    conn: asyncpg.Connection | None = None
    mismatches: list[str] = []

    async def settled() -> bool:
        nonlocal conn, mismatches
        try:
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(settings.dsn, timeout=10)
            mismatches = await oracle_mismatches(conn, oracle)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            mismatches = [f"cannot read the tables yet: {exc}"]
        return not mismatches

    try:
        await eventually(
            settled, timeout_s=timeout_s, interval_s=interval_s,
            what="the tables to equal the oracle",
        )  # fmt: skip
    except AssertionError:
        stacks = processes.dump_stacks(evidence)
        lag = await group_lag(settings)
        verdict = "stalled" if any(lag.values()) else "settled wrong"
        if conn is not None:
            await conn.close()
        pytest.fail(
            f"tables differ from the oracle ({verdict}: lag {lag}): {mismatches}\n"
            f"{timeline}\n{processes.logs()}\n{stacks}"
        )
    assert conn is not None
    return conn
