"""The memory budget's move to disk (``ExpiringTable._demote_over_budget``), without Faust:
the table's memory store and the cold tier replaced by plain stand-ins."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from processors import app as processors_app
from processors.app import ExpiringTable


class _Cold:
    def __init__(self) -> None:
        self.states: dict[str, Any] = {}

    def store(self, partition: int) -> _Cold:
        return self  # every partition's store is open

    def put(self, partition: int, items: list[tuple[str, Any]]) -> int:
        self.states.update(items)
        return len(items)


def _table(states: dict[str, Any], hot_max: int) -> tuple[ExpiringTable, _Cold]:
    table = ExpiringTable.__new__(ExpiringTable)  # no Faust app: only the budget's parts
    cold = _Cold()
    table.__dict__["cold"] = cold
    table.__dict__["app"] = types.SimpleNamespace(rebalancing=False)
    table._data = types.SimpleNamespace(data=states, _key_partition=dict.fromkeys(states, 0))
    table.hot_max, table._unsent, table._in_flight = hot_max, {}, []
    return table, cold


def _ages(states: dict[str, Any]) -> list[tuple[float, Any]]:
    return [(float(state["last_ts"]), key) for key, state in states.items()]


async def test_the_longest_quiet_states_leave_memory_down_to_the_budget() -> None:
    states = {f"k{i}": {"last_ts": i} for i in range(10)}
    table, cold = _table(states, hot_max=4)
    table._unsent["k0"] = (0, states["k0"])  # its write is not in Kafka yet: it stays
    # The six oldest are taken; k0 stays, and the next sweep takes another in its place.
    assert await table._demote_over_budget(_ages(states)) == 5
    assert set(cold.states) == {"k1", "k2", "k3", "k4", "k5"}
    assert set(states) == {"k0", "k6", "k7", "k8", "k9"}


async def test_a_state_written_while_the_move_yields_stays_in_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stream runs between two chunks of the move: a state it writes then (and whose
    window it takes, so the write is in flight) must not go to disk ahead of Kafka."""
    monkeypatch.setattr(processors_app, "_SWEEP_CHUNK", 2)
    states = {f"k{i}": {"last_ts": i} for i in range(6)}
    table, cold = _table(states, hot_max=0)

    async def stream() -> None:
        table.take_writes()  # at the move's first yield: a window flushed (a new _unsent)
        await asyncio.sleep(0)
        states["k5"] = {"last_ts": 100}  # at its second: a record written for k5
        table._unsent["k5"] = (0, states["k5"])

    writer = asyncio.ensure_future(stream())
    await table._demote_over_budget(_ages(states))
    await writer
    assert "k5" not in cold.states and states["k5"] == {"last_ts": 100}
    assert set(cold.states) == {"k0", "k1", "k2", "k3", "k4"}
