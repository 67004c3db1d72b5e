"""When is a worker stuck: the pure rule behind :mod:`processors.watchdog`.

A worker makes progress on a partition when the offset its stream reads (the position) or
the offset it has committed moves. A partition with nothing left to do (lag 0: everything
up to the log end is committed) is idle, not stuck. A partition is **stalled** when it has
work (lag > 0) and neither its position nor its committed offset moved for the bound, or
when it has committed before but its committed offset has not moved for the commit bound
while the stream read on (commits held back by a record never acknowledged:
:mod:`processors.commits`); the bounds restart whenever the partition is (re)assigned.

Besides the source partitions, the watchdog tracks pseudo-partitions with a lag of its own
choosing (a rebalance, whose progress is the recovery reading the changelogs) and a longer
bound (:attr:`Progress.min_bound_s`): a rebalance may legitimately wait for the group.

Nothing here reads a clock or a consumer: samples and times come from the caller, so the
rule is tested on made-up histories (``tests/unit/processors/test_liveness.py``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

__all__ = ["PartitionState", "Progress", "StallTracker", "partition_lag"]


def partition_lag(highwater: int | None, committed: int | None, start: int | None) -> int | None:
    """Records of a partition not yet committed: log end - committed offset, counted from
    the log start when the group never committed (the stages read from ``earliest``);
    None while the log end is unknown."""
    if highwater is None:
        return None
    done = committed if committed is not None and committed >= 0 else start
    return max(0, highwater - (done or 0))


@dataclass(frozen=True, slots=True)
class Progress:
    """One sample of one partition. ``position`` is anything that changes when the stream
    reads on (for a Kafka partition, the next offset to read); ``lag`` None means unknown
    (never stalled on a guess)."""

    position: Hashable
    committed: int | None
    lag: int | None
    min_bound_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PartitionState:
    """What the tracker knows of one partition: its last sample, when it last moved (or was
    idle, or was assigned) and whether it counts as stalled at the time asked."""

    key: Hashable
    sample: Progress
    moved_at: float
    still_s: float  # seconds without progress while it had work (0 when idle or moving)
    stalled: bool
    held_s: float = 0.0  # seconds its committed offset stayed while it had work


class StallTracker:
    """Feed it samples of the assigned partitions with :meth:`observe`; :meth:`states` and
    :meth:`stalled` say which have been still for their bound while having work."""

    def __init__(self, stall_s: float, commit_bound_s: float | None = None) -> None:
        """``commit_bound_s``: how long a committed offset may stay while the stream reads
        on with work left (default twice ``stall_s``; it must exceed the commit interval
        plus a window's sends)."""
        if stall_s <= 0:
            raise ValueError("stall_s must be > 0")
        self.stall_s = stall_s
        self.commit_bound = commit_bound_s if commit_bound_s is not None else 2 * stall_s
        # key -> (sample, when it last moved, when its committed offset last moved)
        self._last: dict[Hashable, tuple[Progress, float, float]] = {}

    def observe(self, now: float, samples: Mapping[Hashable, Progress]) -> None:
        """Record the samples taken at ``now``. A partition absent from ``samples`` is no
        longer tracked (revoked, or paused for a rebalance): if it comes back, its bound
        starts again."""
        last = self._last
        for key in [k for k in last if k not in samples]:
            del last[key]
        for key, sample in samples.items():
            previous = last.get(key)
            if previous is None or not sample.lag:
                last[key] = (sample, now, now)
                continue
            before, moved_at, committed_at = previous
            if _moved(before, sample):
                moved_at = now
            if before.committed != sample.committed or sample.committed is None:
                committed_at = now
            last[key] = (sample, moved_at, committed_at)

    def bound_s(self, sample: Progress) -> float:
        return max(self.stall_s, sample.min_bound_s)

    def commit_bound_s(self, sample: Progress) -> float:
        """How long a committed offset may stay while the stream reads on with work left."""
        return max(self.commit_bound, sample.min_bound_s)

    def states(self, now: float) -> list[PartitionState]:
        """Every tracked partition as of ``now``."""
        out = []
        for key, (sample, moved_at, committed_at) in self._last.items():
            still = now - moved_at if sample.lag else 0.0
            held = now - committed_at if sample.lag else 0.0
            stalled = bool(sample.lag) and (
                still >= self.bound_s(sample) or held >= self.commit_bound_s(sample)
            )
            out.append(
                PartitionState(key, sample, moved_at, max(0.0, still), stalled, max(0.0, held))
            )
        return out

    def stalled(self, now: float) -> list[PartitionState]:
        """The partitions stalled as of ``now`` (empty: the worker is making progress)."""
        return [state for state in self.states(now) if state.stalled]


def _moved(before: Progress, after: Progress) -> bool:
    return before.position != after.position or before.committed != after.committed
