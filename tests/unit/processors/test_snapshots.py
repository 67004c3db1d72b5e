"""Local snapshots of table partitions (processors.snapshots): what is written is what is
loaded, per partition, and anything doubtful is not loaded (the changelog is replayed)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from processors.snapshots import (
    TableSnapshot,
    load_partition,
    remove_temporaries,
    write_partitions,
)

TOPIC = "app-entity_state-changelog"


def _table(states: int, partitions: int) -> TableSnapshot:
    data = {f"log:p/{n}": {"n": n, "last_ts": 1.0} for n in range(states)}
    return TableSnapshot(data, {key: n % partitions for n, key in enumerate(data)}, time.time())


def test_each_partition_loads_its_own_states_and_offset(tmp_path: Path) -> None:
    table = _table(10_001, 3)
    written = asyncio.run(write_partitions(tmp_path, TOPIC, table, {0: 41, 1: 7, 2: 99}, {0, 1, 2}))
    assert written == 10_001
    for partition, offset in ((0, 41), (1, 7), (2, 99)):
        loaded = load_partition(tmp_path, TOPIC, partition, max_age_s=60)
        assert loaded is not None
        assert loaded.offset == offset
        expected = {k: v for k, v in table.data.items() if table.partition_of[k] == partition}
        assert loaded.states == expected


def test_a_partition_without_offset_or_not_owned_is_not_written(tmp_path: Path) -> None:
    table = _table(30, 3)
    asyncio.run(write_partitions(tmp_path, TOPIC, table, {0: 1, 1: 2}, {1, 2}))
    assert load_partition(tmp_path, TOPIC, 0, max_age_s=60) is None  # not owned
    assert load_partition(tmp_path, TOPIC, 1, max_age_s=60) is not None
    assert load_partition(tmp_path, TOPIC, 2, max_age_s=60) is None  # no offset known


def test_a_state_deleted_after_the_copy_is_left_out(tmp_path: Path) -> None:
    table = _table(10, 1)
    del table.data["log:p/3"]  # expired between the copies of the two maps
    asyncio.run(write_partitions(tmp_path, TOPIC, table, {0: 5}, {0}))
    loaded = load_partition(tmp_path, TOPIC, 0, max_age_s=60)
    assert loaded is not None and "log:p/3" not in loaded.states and len(loaded.states) == 9


def test_old_truncated_or_corrupt_snapshots_are_not_loaded(tmp_path: Path) -> None:
    old = _table(10, 1)
    old = TableSnapshot(old.data, old.partition_of, time.time() - 3600)
    asyncio.run(write_partitions(tmp_path, TOPIC, old, {0: 5}, {0}))
    assert load_partition(tmp_path, TOPIC, 0, max_age_s=60) is None
    assert load_partition(tmp_path, TOPIC, 0, max_age_s=7200) is not None

    path = tmp_path / TOPIC / "0.snap"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0])  # the head without its states
    assert load_partition(tmp_path, TOPIC, 0, max_age_s=7200) is None
    path.write_bytes(b"not json\n")
    assert load_partition(tmp_path, TOPIC, 0, max_age_s=7200) is None


def test_only_stale_temporaries_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / TOPIC
    folder.mkdir()
    stale, fresh = folder / "0.snap.1.tmp", folder / "1.snap.2.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    remove_temporaries(tmp_path, TOPIC)
    assert not stale.exists() and fresh.exists()
