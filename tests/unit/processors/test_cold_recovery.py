"""Recovery's split between memory and the cold tier (``ExpiringTable._recover_cold``),
without Faust: the table's memory store replaced by a plain stand-in, the cold tier real."""

from __future__ import annotations

import time
import types
from pathlib import Path
from typing import Any

import orjson

from processors.app import ExpiringTable
from processors.cold import ColdStore

_QUIET_S = 60.0


def _table(cold: ColdStore) -> ExpiringTable:
    table = ExpiringTable.__new__(ExpiringTable)  # no Faust app: only recovery's parts
    table.__dict__["cold"] = cold
    table._data = types.SimpleNamespace(data={}, _key_partition={})
    table.quiet_s = _QUIET_S
    return table


def _event(key: str, partition: int, state: dict[str, Any]) -> Any:
    message = types.SimpleNamespace(partition=partition, value=orjson.dumps(state))
    return types.SimpleNamespace(key=key, value=orjson.dumps(state), message=message)


def test_a_partition_whose_cold_store_is_not_open_keeps_its_states_in_memory(
    tmp_path: Path,
) -> None:
    """Recovery restarted by a second rebalance handed over a changelog batch of a partition
    whose cold store was not open: the worker crashed (``KeyError: 2`` in ``ColdStore.put``)."""
    cold = ColdStore(tmp_path, "changelog")
    cold.open(0, trusted=False)
    quiet = {"kind": "log", "last_ts": time.time() - 10 * _QUIET_S}
    events = [_event("log:p/a", 0, quiet), _event("log:p/b", 2, quiet)]

    left = _table(cold)._recover_cold(cold, events)

    assert [event.key for event in left] == ["log:p/b"]  # for the memory store
    assert cold.get(0, "log:p/a") == quiet  # partition 0's store is open: to disk
    assert cold.store(2) is None


def test_the_sweep_leaves_in_memory_the_states_of_a_partition_whose_store_is_not_open(
    tmp_path: Path,
) -> None:
    cold = ColdStore(tmp_path, "changelog")
    cold.open(0, trusted=False)
    table = _table(cold)
    quiet = {"kind": "log", "last_ts": 1.0}
    table._states.update({"log:p/a": quiet, "log:p/b": quiet})

    moved = table._move_to_cold({0: [("log:p/a", quiet)], 2: [("log:p/b", quiet)]})

    assert moved == 1
    assert cold.get(0, "log:p/a") == quiet and "log:p/a" not in table._states
    assert table._states["log:p/b"] == quiet


def test_a_sweep_with_the_cold_tier_off_expires_and_moves_nothing_else() -> None:
    """``LOGFLUME_PROCESSOR_STATE_QUIET_S=0``: no cold tier, every state stays in memory."""
    table = ExpiringTable.__new__(ExpiringTable)
    table.__dict__["cold"] = None
    table._data = types.SimpleNamespace(
        data={"log:p/old": {"last_ts": 1.0}, "log:p/new": {"last_ts": 500.0}},
        _key_partition={"log:p/old": 0, "log:p/new": 0},
    )
    table._unsent, table._in_flight = {}, []

    expired, moved = table._sweep_chunk(["log:p/old", "log:p/new"], {0: 100.0}, {})

    assert (expired, moved) == (1, 0)
    assert list(table._states) == ["log:p/new"]
    assert table._unsent == {"log:p/old": (0, None)}  # the tombstone of the expired one
