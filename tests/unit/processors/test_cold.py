"""The cold tier's store (processors.cold): what goes in comes back, across a reopen when a
snapshot vouches for it, and is cleared when none does."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from processors.cold import ColdStore


def _state(n: int, last_ts: float) -> dict[str, object]:
    return {"kind": "log", "seen": [f"e{n}"], "last_ts": last_ts, "mut": {"x": [n, 1, "e"]}}


def test_states_come_back_and_misses_are_none(tmp_path: Path) -> None:
    store = ColdStore(tmp_path, "changelog")
    store.open(3, trusted=False)
    assert store.put(3, [(f"log:p/{n}", _state(n, float(n))) for n in range(10_000)]) == 10_000
    assert store.get(3, "log:p/42") == _state(42, 42.0)
    assert store.get(3, "log:p/missing") is None
    assert store.get(4, "log:p/42") is None  # a partition not opened
    store.put(3, [("log:p/42", _state(42, 99.0))])  # a newer copy replaces the older
    assert store.get(3, "log:p/42") == _state(42, 99.0)


def test_older_than_and_delete(tmp_path: Path) -> None:
    store = ColdStore(tmp_path, "changelog")
    store.open(0, trusted=False)
    store.put(0, [(f"k{n}", _state(n, float(n))) for n in range(100)])
    old = store.older_than(0, 10.0, 1000)
    assert sorted(old) == sorted(f"k{n}" for n in range(10))
    store.delete(0, old)
    assert store.older_than(0, 10.0, 1000) == []
    assert store.get(0, "k5") is None
    assert store.get(0, "k50") == _state(50, 50.0)


def test_a_reopened_store_is_kept_only_with_a_snapshot(tmp_path: Path) -> None:
    first = ColdStore(tmp_path, "changelog")
    assert not first.exists(1)  # so a snapshot of partition 1 would not be loaded
    first.open(1, trusted=False)
    first.put(1, [("a", _state(1, 1.0)), ("b", _state(2, 2.0))])
    first.close_all()

    kept = ColdStore(tmp_path, "changelog")  # another process: its Bloom filter is rebuilt
    assert kept.exists(1)
    kept.open(1, trusted=True)
    assert kept.get(1, "a") == _state(1, 1.0)
    kept.close_all()

    cleared = ColdStore(tmp_path, "changelog")
    cleared.open(1, trusted=False)  # no snapshot: recovery rebuilds it from the changelog
    assert cleared.get(1, "a") is None
    assert cleared.rows() == 0


def test_the_filter_grows_with_the_store(tmp_path: Path) -> None:
    store = ColdStore(tmp_path, "changelog")
    store.open(0, trusted=False)
    for start in range(0, 200_000, 50_000):  # past the first filter's capacity
        store.put(0, [(f"k{n}", _state(n, 1.0)) for n in range(start, start + 50_000)])
    assert all(store.get(0, f"k{n}") is not None for n in range(0, 200_000, 997))


def test_states_stored_while_the_filter_is_built_are_found_after(tmp_path: Path) -> None:
    first = ColdStore(tmp_path, "changelog")
    first.open(0, trusted=False)
    first.put(0, [(f"old{n}", _state(n, 1.0)) for n in range(200_000)])
    first.close_all()

    store = ColdStore(tmp_path, "changelog")
    store.open(0, trusted=True)  # the filter is built by a thread from here on
    store.put(0, [(f"new{n}", _state(n, 2.0)) for n in range(1000)])
    assert store.get(0, "old7") == _state(7, 1.0)  # answered by SQLite meanwhile
    partition = store._partitions[0]
    deadline = time.monotonic() + 30
    while partition.bloom is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert partition.bloom is not None
    assert all(store.get(0, f"new{n}") == _state(n, 2.0) for n in range(1000))
    assert store.get(0, "old199999") == _state(199_999, 1.0)
    assert store.get(0, "never") is None


def test_a_full_filter_answers_while_its_successor_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from processors import cold

    release = threading.Event()
    build = cold._Partition._build

    def held_build(self: cold._Partition, generation: int) -> None:
        if self.bloom is not None:  # a rebuild (not the first build at open): held
            release.wait(10)
        build(self, generation)

    monkeypatch.setattr(cold._Partition, "_build", held_build)
    part = cold._Partition(tmp_path / "0.sqlite")
    deadline = time.monotonic() + 10
    while part.bloom is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first = part.bloom
    assert first is not None
    capacity = first.bits // cold._BITS_PER_KEY
    value = b'{"last_ts": 1.0}'
    part.put([(f"k{n}", 1.0, value) for n in range(capacity + 1)])  # full: a rebuild starts
    part.put([("during", 1.0, value)])
    assert part.bloom is first  # the full filter still answers, holding the new key too
    assert part.may_hold("during") and part.may_hold("k0")
    assert part.get("during") == {"last_ts": 1.0}
    release.set()
    while part.bloom is first and time.monotonic() < deadline:
        time.sleep(0.01)
    assert part.bloom is not first and part.bloom.bits > first.bits
    assert all(part.may_hold(k) for k in ("during", "k0", f"k{capacity}"))


def test_a_store_of_the_first_layout_counts_as_none_and_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "changelog"
    folder.mkdir()
    for suffix in ("", "-wal", "-shm"):
        (folder / f"2.sqlite{suffix}").write_bytes(b"old")
    store = ColdStore(tmp_path, "changelog")
    assert not store.exists(2)  # so its snapshot is not trusted: the changelog rebuilds both
    store.open(2, trusted=False)
    assert not any(folder.glob("2.sqlite*"))
    store.put(2, [("log:p/1", _state(1, 1.0))])
    assert store.get(2, "log:p/1") == _state(1, 1.0)


def test_a_store_beside_a_file_of_the_first_layout_is_not_trusted(tmp_path: Path) -> None:
    # A worker of the older code took the partition meanwhile: it may have moved states into
    # the first layout's file and written the shared snapshot; the new layout's store is stale.
    store = ColdStore(tmp_path, "changelog")
    store.open(1, trusted=False)
    store.put(1, [("log:p/1", _state(1, 1.0))])
    store.close([1])
    assert store.exists(1)
    (tmp_path / "changelog" / "1.sqlite").write_bytes(b"older code's store")
    assert not store.exists(1)  # so the snapshot is not loaded and the store is cleared
    store.open(1, trusted=False)
    assert store.get(1, "log:p/1") is None
    assert not (tmp_path / "changelog" / "1.sqlite").exists()
