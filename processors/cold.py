"""The cold tier of a stage's state: states quiet for a while, on the worker's disk.

A stage keeps in memory only the states touched within ``LOGFLUME_PROCESSOR_STATE_QUIET_S``
(the hot tier, a dict). A state quiet for longer moves to its partition's cold store, an
SQLite file next to the worker, where it stays until its TTL (``STATE_TTL_S``, 7 days by
default) ends; an event that arrives for it later finds it there, merges exactly as if the
state had never left memory (duplicates included: the state keeps its event ids), and the
state is hot again. So memory holds what is active, and the disk holds the history.

Consistency with the changelog and the snapshots (:mod:`processors.snapshots`):

- Moving a state to the cold tier writes no changelog record: the changelog still holds
  the state's last value, and the cold copy is that same value. The TTL's tombstone, when
  it comes, removes both.
- A state is committed to its cold store before it leaves the hot tier, so a snapshot
  taken after that (which no longer holds it) is always completed by the cold store.
- A state moves only once Kafka holds its latest write (and so its window's outputs): a
  cold copy never runs ahead of the changelog, so a killed worker's successor cannot take
  redelivered events for duplicates of ones whose outputs were never sent.
- A hot state wins over a cold copy of the same key (the cold copy may be older: the
  state came back and changed since).
- The cold store of a partition is trusted only together with a snapshot of the same home
  folder (both are kept by the workers of that folder), and a snapshot only together with
  its cold store (a partition whose store is missing ignores its snapshot). A worker that
  gets a partition without both rebuilds both tiers from the whole changelog: the cold file
  is cleared first, and each recovered state goes to the tier its age says.

Files: ``<dir>/<changelog topic>/<partition>.v2.sqlite`` (WAL mode; a killed process loses
nothing committed). A miss, the common case (every new entity is one), is answered by an
in-memory Bloom filter of the partition's cold keys without touching SQLite; the filter is
built in the background when a partition is opened, so a worker's recovery does not grow
with the history its disk holds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ColdStore"]

log = logging.getLogger(__name__)

# A rowid table: its rows are appended, and only the key's index (small entries) takes
# the keys in their random order. The first layout (WITHOUT ROWID, the ~700-byte states
# inside the key's B-tree) cost 47 us per state moved and 8 us per lookup with random keys,
# against 10 and 4.3 (200,000 states, 5,000 per transaction); moving states to disk was 11%
# of a worker's time in a 400,000-event run.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS states (
    key TEXT PRIMARY KEY, last_ts REAL NOT NULL, value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS states_last_ts ON states (last_ts);
"""
_LAYOUT = "v2"  # in the file name: a file of the first layout is not opened (see _path)
_BITS_PER_KEY = 16  # with 3 probes: about 0.3% false positives at capacity
_MIN_BITS = 1 << 20


@dataclass
class _Bloom:
    """A Bloom filter over ``hash(key)`` (salted per process: rebuilt at each open)."""

    bits: int = _MIN_BITS
    array: bytearray = field(default_factory=lambda: bytearray(_MIN_BITS // 8))
    keys: int = 0  # keys added since it was built (deleted ones are not taken out)

    @classmethod
    def sized(cls, keys: int) -> _Bloom:
        bits = _MIN_BITS
        while bits < keys * _BITS_PER_KEY:
            bits <<= 1
        return cls(bits, bytearray(bits // 8))

    def add(self, key: str) -> None:
        h, mask, array = hash(key), self.bits - 1, self.array
        for bit in (h & mask, (h >> 21) & mask, (h >> 42) & mask):
            array[bit >> 3] |= 1 << (bit & 7)
        self.keys += 1

    def __contains__(self, key: str) -> bool:
        # Unrolled: a generator over the three probes cost 0.73 us per miss, this 0.19.
        h, mask, array = hash(key), self.bits - 1, self.array
        bit = h & mask
        if not array[bit >> 3] & (1 << (bit & 7)):
            return False
        bit = (h >> 21) & mask
        if not array[bit >> 3] & (1 << (bit & 7)):
            return False
        bit = (h >> 42) & mask
        return bool(array[bit >> 3] & (1 << (bit & 7)))

    @property
    def full(self) -> bool:
        return self.keys * _BITS_PER_KEY > self.bits


class _Partition:
    """One partition's file. Its Bloom filter is built by a thread of its own, so opening a
    partition costs the same whatever the file holds; until the filter is there, every
    lookup asks SQLite (the same answers, a few microseconds slower). A filter that fills
    up is rebuilt twice the size the same way, and the full one answers meanwhile: a Bloom
    filter has no false negatives however full, only more false positives (a rebuild used
    to leave every lookup to SQLite, 17% of the lookups of a 500,000-state demotion)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
        self.db.executescript(_SCHEMA)
        self.rows = 0  # known once the filter is built
        self.bloom: _Bloom | None = None  # None: not built (yet), so not to be consulted
        self._lock = threading.Lock()
        self._generation = 0  # a clear or a new build makes a running build's result stale
        self._added: list[str] = []  # keys stored while a build runs
        self._building = False
        self._build_in_background()

    def _build_in_background(self, *, keep: bool = False) -> None:
        """A new filter from the file's keys; ``keep``: the current one answers meanwhile."""
        with self._lock:
            if not keep:
                self.bloom = None
            self._added = []
            self._building = True
            self._generation += 1
            generation = self._generation
        threading.Thread(
            target=self._build, args=(generation,), name="cold-bloom", daemon=True
        ).start()

    def _build(self, generation: int) -> None:
        try:
            reader = sqlite3.connect(self.path, isolation_level=None)
            try:
                rows = reader.execute("SELECT count(*) FROM states").fetchone()[0]
                bloom = _Bloom.sized(max(rows, 1) * 2)
                for (key,) in reader.execute("SELECT key FROM states"):
                    bloom.add(key)
            finally:
                reader.close()
        except sqlite3.Error as exc:  # no new filter: the old one, if any, or SQLite answers
            log.warning("cold store %s: no filter (%s)", self.path, exc)
            with self._lock:
                if generation == self._generation:
                    self._building = False
            return
        with self._lock:
            if generation != self._generation:
                return
            for key in self._added:
                bloom.add(key)
            self.rows = rows + len(self._added)
            self._added = []
            self.bloom = bloom
            self._building = False

    def clear(self) -> None:
        self.db.execute("DELETE FROM states")
        with self._lock:
            self._generation += 1  # a build still running read the old keys
            self.rows = 0
            self._added = []
            self._building = False
            self.bloom = _Bloom.sized(1)

    def may_hold(self, key: str) -> bool:
        bloom = self.bloom
        return bloom is None or key in bloom

    def get(self, key: str) -> Any:
        if not self.may_hold(key):
            return None
        row = self.db.execute("SELECT value FROM states WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def put(self, rows: list[tuple[str, float, bytes]]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO states VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        with self._lock:
            if self._building:  # the filter being built may not have read these keys
                self._added.extend(key for key, _, _ in rows)
            bloom = self.bloom
            if bloom is None:
                return
            for key, _, _ in rows:
                bloom.add(key)
            if not self._building:
                self.rows += len(rows)  # an upper bound (a replaced copy counts again)
            grow = bloom.full and not self._building
        if grow:
            self._build_in_background(keep=True)

    def delete(self, keys: list[str]) -> None:
        db = self.db
        before = db.total_changes
        db.execute("BEGIN")
        try:
            db.executemany("DELETE FROM states WHERE key = ?", ((k,) for k in keys))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.rows = max(0, self.rows - (db.total_changes - before))

    def older_than(self, cutoff: float, limit: int) -> list[str]:
        query = "SELECT key FROM states WHERE last_ts < ? LIMIT ?"
        return [key for (key,) in self.db.execute(query, (cutoff, limit))]


class ColdStore:
    """The cold tier of one table: a store per partition this worker owns."""

    def __init__(self, folder: Path, topic: str) -> None:
        self.folder = folder / topic
        self._partitions: dict[int, _Partition] = {}

    def open(self, partition: int, *, trusted: bool) -> None:
        """Start using a partition's store; ``trusted`` says a snapshot of this folder was
        loaded with it, else the store is cleared (recovery rebuilds it from the changelog)."""
        store = self._partitions.get(partition)
        if store is None:
            self._remove_first_layout(partition)
            store = self._partitions[partition] = _Partition(self._path(partition))
        if not trusted and store.db.execute("SELECT EXISTS (SELECT 1 FROM states)").fetchone()[0]:
            log.info(
                "cold store %s/%d: cleared (no snapshot to go with it)", self.folder, partition
            )
            store.clear()

    def exists(self, partition: int) -> bool:
        """Whether the partition has a store on disk (a snapshot is loaded only then: the
        states that left memory before it was taken are in the store, not in it). Not while
        a file of the first layout is there too: a worker of the older code may have moved
        states into it since, and written the snapshot beside it (workers of one home folder
        share the snapshots), so neither file goes with that snapshot."""
        if partition in self._partitions:
            return True
        return self._path(partition).exists() and not self._first_layout(partition).exists()

    def close(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            store = self._partitions.pop(partition, None)
            if store is not None:
                store.db.close()

    def close_all(self) -> None:
        self.close(list(self._partitions))

    @property
    def partitions(self) -> set[int]:
        return set(self._partitions)

    def rows(self) -> int:
        """About how many states the open stores hold (replacements may count twice)."""
        return sum(store.rows for store in self._partitions.values())

    def store(self, partition: int) -> _Partition | None:
        """The partition's open store (its ``get`` is :meth:`get` for that partition)."""
        return self._partitions.get(partition)

    def get(self, partition: int, key: str) -> Any:
        """The cold state of ``key``, or None (also for a partition not opened)."""
        store = self._partitions.get(partition)
        return None if store is None else store.get(key)

    def put(self, partition: int, states: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Commit states to a partition's store (replacing older copies); how many."""
        rows = [(key, float(state["last_ts"]), orjson.dumps(state)) for key, state in states]
        if rows:
            self._partitions[partition].put(rows)
        return len(rows)

    def delete(self, partition: int, keys: list[str]) -> None:
        """Remove the copies of ``keys`` (the filter skips those never stored here)."""
        store = self._partitions.get(partition)
        if store is not None:
            present = [key for key in keys if store.may_hold(key)]
            if present:
                store.delete(present)

    def older_than(self, partition: int, cutoff: float, limit: int) -> list[str]:
        """Up to ``limit`` keys whose state's ``last_ts`` is before ``cutoff``."""
        store = self._partitions.get(partition)
        return [] if store is None else store.older_than(cutoff, limit)

    def _path(self, partition: int) -> Path:
        """The store's file. A file of the first layout (``<partition>.sqlite``) counts as
        no store, so its partition is rebuilt from the changelog; it is removed at open."""
        return self.folder / f"{partition}.{_LAYOUT}.sqlite"

    def _first_layout(self, partition: int) -> Path:
        return self.folder / f"{partition}.sqlite"

    def _remove_first_layout(self, partition: int) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self._first_layout(partition)}{suffix}").unlink(missing_ok=True)
