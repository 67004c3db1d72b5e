"""The stall rule (processors.liveness) on made-up histories of position, committed offset
and log end, and the test-only wedge hook's once-only firing (processors.faults)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.faults import WedgeHook
from processors.liveness import Progress, StallTracker, partition_lag

STALL_S = 60.0


def sample(position: int | None, committed: int | None, highwater: int | None) -> Progress:
    return Progress(position, committed, partition_lag(highwater, committed, 0))


def stalled_at(history: list[tuple[float, Progress]], stall_s: float = STALL_S) -> float | None:
    """The first sample time at which partition 0 counts as stalled, if any."""
    tracker = StallTracker(stall_s)
    for now, progress in history:
        tracker.observe(now, {0: progress})
        if tracker.stalled(now):
            return now
    return None


def test_lag_counts_from_the_committed_offset_else_the_log_start() -> None:
    assert partition_lag(100, 40, 0) == 60
    assert partition_lag(100, None, 30) == 70  # never committed: from the log start
    assert partition_lag(100, None, None) == 100
    assert partition_lag(100, 100, 0) == 0
    assert partition_lag(100, 120, 0) == 0  # a log end read before the commit
    assert partition_lag(None, 40, 0) is None  # unknown, never a guess


def test_work_without_any_movement_is_a_stall_at_the_bound_not_before() -> None:
    history = [(t, sample(50, 40, 100)) for t in range(0, 120, 5)]
    assert stalled_at(history) == 60  # 0 is when it was first seen


def test_a_moving_position_is_progress() -> None:
    history = [(t, sample(50 + t, 40 + t // 2, 1000)) for t in range(0, 300, 5)]
    assert stalled_at(history) is None


def test_commits_held_while_the_stream_reads_on_is_a_stall_at_twice_the_bound() -> None:
    # processors.commits holds the commits back while the record at the committed offset
    # is not acknowledged: the position moves, the committed offset does not.
    history = [(t, sample(50 + t, 40, 1000)) for t in range(0, 300, 5)]
    assert stalled_at(history) == 120


def test_the_commit_bound_is_the_callers() -> None:
    history = [(t, sample(50 + t, 40, 1000)) for t in range(0, 900, 5)]
    tracker = StallTracker(STALL_S, commit_bound_s=600)
    for now, progress in history:
        tracker.observe(now, {0: progress})
        if tracker.stalled(now):
            assert now == 600
            break
    else:
        raise AssertionError("never stalled")


def test_no_commit_yet_is_not_held_commits() -> None:
    # A new group has not committed: only the position's rule applies.
    history = [(t, sample(50 + t, None, 1000)) for t in range(0, 300, 5)]
    assert stalled_at(history) is None


def test_a_moving_committed_offset_alone_is_progress() -> None:
    # Everything read already (position at the log end), the commits follow.
    history = [(t, sample(1000, 400 + t, 1000)) for t in range(0, 300, 5)]
    assert stalled_at(history) is None


def test_the_bound_counts_from_the_last_movement() -> None:
    history = [(t, sample(50 + min(t, 30), 40, 1000)) for t in range(0, 200, 5)]
    assert stalled_at(history) == 90  # moved last at 30


def test_an_idle_partition_is_never_stalled() -> None:
    # Nothing moves, but everything up to the log end is committed.
    history = [(t, sample(100, 100, 100)) for t in range(0, 600, 5)]
    assert stalled_at(history) is None


def test_idle_time_does_not_count_once_work_arrives() -> None:
    idle = [(t, sample(100, 100, 100)) for t in range(0, 300, 5)]
    busy = [(t, sample(100, 100, 150)) for t in range(300, 500, 5)]  # new records, never read
    assert stalled_at(idle + busy) == 355  # idle last at 295


def test_unknown_lag_is_never_a_stall() -> None:
    history = [(t, Progress(5, 5, None)) for t in range(0, 600, 5)]
    assert stalled_at(history) is None


def test_commits_stuck_while_everything_is_read_is_a_stall() -> None:
    # A wedged send: the stream read to the log end, the records are never acknowledged.
    history = [(t, sample(1000, 700, 1000)) for t in range(0, 100, 1)]
    assert stalled_at(history) == 60


def test_a_partition_reassigned_starts_its_bound_again() -> None:
    tracker = StallTracker(STALL_S)
    tracker.observe(0, {0: sample(50, 40, 100), 1: sample(10, 10, 10)})
    tracker.observe(50, {1: sample(10, 10, 10)})  # partition 0 revoked (or paused)
    tracker.observe(55, {0: sample(50, 40, 100), 1: sample(10, 10, 10)})
    assert not tracker.stalled(100)
    stalled = tracker.stalled(115)
    assert [s.key for s in stalled] == [0]
    assert stalled[0].still_s == pytest.approx(60)


def test_only_the_stuck_partition_is_named() -> None:
    tracker = StallTracker(10)
    for t in range(0, 30):
        tracker.observe(t, {0: sample(5, 5, 50), 1: sample(t, t, 1000), 2: sample(3, 3, 3)})
    assert [s.key for s in tracker.stalled(29)] == [0]
    states = {s.key: s for s in tracker.states(29)}
    assert states[0].still_s == 29 and states[1].still_s == 0 and states[2].still_s == 0


def test_a_pseudo_partition_gets_its_longer_bound() -> None:
    tracker = StallTracker(10)
    rebalance = Progress(("generation", 7), None, 1, min_bound_s=36)
    for t in range(0, 40):
        tracker.observe(t, {"rebalance": rebalance})
        assert bool(tracker.stalled(t)) == (t >= 36)


def test_a_recovery_that_reads_on_is_progress() -> None:
    tracker = StallTracker(10)
    for t in range(0, 100):
        tracker.observe(t, {"rebalance": Progress((3, t * 100), None, 1, min_bound_s=36)})
        assert not tracker.stalled(t)


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StallTracker(0)


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 5)), min_size=1),
    st.floats(1, 30),
)
def test_stalled_exactly_when_the_brute_force_says_so(
    steps: list[tuple[int, int, int]], stall_s: float
) -> None:
    """Against a brute force over the whole history: at each time, stalled iff the lag is
    > 0 and the last time the sample moved (or was idle) is at least the bound ago."""
    tracker = StallTracker(stall_s)
    history: list[tuple[float, Progress]] = []
    for index, (position, committed, extra) in enumerate(steps):
        now = index * 2.5
        progress = Progress(position, committed, extra)
        history.append((now, progress))
        tracker.observe(now, {0: progress})
        last_moved = last_committed = 0.0
        for (_, before), (u, after) in itertools.pairwise(history):
            moved = (before.position, before.committed) != (after.position, after.committed)
            if moved or not after.lag:
                last_moved = u
            if before.committed != after.committed or not after.lag:
                last_committed = u
        if not history[0][1].lag:
            last_moved = max(last_moved, history[0][0])
            last_committed = max(last_committed, history[0][0])
        expected = bool(progress.lag) and (
            now - last_moved >= stall_s or now - last_committed >= 2 * stall_s
        )
        assert bool(tracker.stalled(now)) == expected


def test_the_wedge_fires_once_after_its_records(tmp_path: Path) -> None:
    hook = WedgeHook("stream", 3)
    assert not hook.due("stream", 2)
    assert not hook.due("send", 5)  # another point
    assert hook.due("stream", 3)
    assert not hook.due("stream", 4)  # once per process


def test_the_wedge_marker_lets_only_the_first_worker_wedge(tmp_path: Path) -> None:
    marker = tmp_path / "wedged"
    first, second = WedgeHook("send", 1, marker), WedgeHook("send", 1, marker)
    assert first.due("send", 1) and marker.exists()
    assert not second.due("send", 1)
    assert not WedgeHook("send", 1, marker).due("send", 5)  # the restarted worker
