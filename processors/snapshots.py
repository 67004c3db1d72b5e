"""Local snapshots of a table's partitions, so that a restarted worker recovers from its disk
and reads only the changelog's tail.

A worker keeps its state in memory and Faust rebuilds it from the changelog whenever the
worker gets a partition, at ~4,000 records/s whatever the disk or the network allow (its
recovery handles every record in Python, several times over). After a long run that is
minutes. A snapshot is what Kafka Streams calls a checkpoint: the partition's states as
they were after some changelog offset, written next to the worker; on assignment the
states are loaded from it and Faust reads the changelog from that offset on only
(``persisted_offset``), which is what its RocksDB store does, without a database lookup
and an encode per access on the stages' hot path.

Exact because of how the stages write (:mod:`processors.agents`): a window's state writes
are taken in one step with its outputs and sent after the outputs are acknowledged, and the
next window's writes go out only after that. A copy of the table taken when a window's
writes are taken therefore holds exactly the changelog up to the offsets those writes get;
the window that takes a copy waits for their acknowledgement before the copy is written
(a partition that window did not write keeps the offset an earlier snapshot window
noted: lower than the truth). Replaying the changelog from a lower offset than the true
one is harmless (every record is a whole state; the newest wins), so an older snapshot is
never wrong, only slower; a snapshot older than the states' TTL holds nothing alive and is
not loaded.

Files: ``<dir>/<changelog topic>/<partition>.snap``, a first line of JSON
``{"offset": int, "written_at": float, "states": int}`` then lines of JSON arrays of
``[key, state]`` pairs. Written to a temporary name and renamed, so a worker killed while
writing leaves the previous snapshot whole. Workers of one home folder share the folder:
any worker that gets a partition may start from the snapshot of the worker that had it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "Snapshot",
    "TableSnapshot",
    "load_partition",
    "remove_temporaries",
    "write_partitions",
]

log = logging.getLogger(__name__)

_LINE_STATES = 2000  # states per line (and per yield to the event loop while writing)
_TEMPORARY_MAX_AGE_S = 600.0  # a temporary file this old was left by a killed worker


@dataclass(frozen=True, slots=True)
class TableSnapshot:
    """A table's states as they were when a window's writes were taken (shallow copies:
    states are replaced on write, never changed in place), grouped when written."""

    data: dict[Any, Any]
    partition_of: dict[Any, int]
    taken_at: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One partition's snapshot as loaded."""

    offset: int
    written_at: float
    states: dict[str, Any]


def _path(folder: Path, topic: str, partition: int) -> Path:
    return folder / topic / f"{partition}.snap"


async def write_partitions(
    folder: Path,
    topic: str,
    snapshot: TableSnapshot,
    offsets: Mapping[int, int],
    partitions: set[int],
) -> int:
    """Write the snapshot of each of ``partitions`` that has a known changelog offset; the
    states written. Yields to the event loop between lines, so the stream goes on."""
    by_partition: dict[int, list[tuple[Any, Any]]] = {p: [] for p in partitions if p in offsets}
    data = snapshot.data
    for count, (key, partition) in enumerate(snapshot.partition_of.items(), 1):
        items = by_partition.get(partition)
        if items is not None:
            value = data.get(key)
            if value is not None:
                items.append((key, value))
        if count % (10 * _LINE_STATES) == 0:
            await asyncio.sleep(0)
    (folder / topic).mkdir(parents=True, exist_ok=True)
    written = 0
    for partition, items in by_partition.items():
        path = _path(folder, topic, partition)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        head = {"offset": offsets[partition], "written_at": snapshot.taken_at, "states": len(items)}
        with temporary.open("wb") as out:
            out.write(orjson.dumps(head) + b"\n")
            for start in range(0, len(items), _LINE_STATES):
                out.write(orjson.dumps(items[start : start + _LINE_STATES]) + b"\n")
                await asyncio.sleep(0)
        temporary.replace(path)
        written += len(items)
    return written


def load_partition(folder: Path, topic: str, partition: int, max_age_s: float) -> Snapshot | None:
    """The partition's snapshot, or None when there is none, it is older than ``max_age_s``
    or it cannot be read (then the whole changelog is replayed, as without snapshots)."""
    path = _path(folder, topic, partition)
    if not path.exists():
        return None
    try:
        with path.open("rb") as source:
            head = orjson.loads(source.readline())
            if time.time() - float(head["written_at"]) > max_age_s:
                return None
            states: dict[str, Any] = {}
            for line in source:
                states.update(orjson.loads(line))
        if len(states) != head["states"]:
            raise ValueError(f"{len(states)} states, the head says {head['states']}")
        return Snapshot(int(head["offset"]), float(head["written_at"]), states)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # orjson's error is a ValueError
        log.warning("snapshot %s not used (%s: %s)", path, type(exc).__name__, exc)
        return None


def remove_temporaries(folder: Path, topic: str) -> None:
    """Snapshots a killed worker left half written (not the ones being written now)."""
    for path in (folder / topic).glob("*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > _TEMPORARY_MAX_AGE_S:
                path.unlink()
