"""Faust's commit of acknowledged offsets, with the fix of processors.commits: a run of
acknowledged offsets is committed only when it starts at the committed offset (the next
record to read); gaps (offsets that do not exist) count as acknowledged, as in Faust."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from processors import commits
from processors.commits import committable_offset, patch_faust_commits

TP0 = TP("logflume.events", 0)


def consumer(
    committed: int | None,
    acked: list[int],
    gaps: list[tuple[int, int]] = (),
    *,
    read: int | None = None,
    in_flight: list[int] = (),
    log_start: int = 0,
) -> Any:
    """A stand-in for Faust's consumer with the state ``_new_offset`` reads; ``read`` is the
    offset its stream last delivered, ``in_flight`` those delivered and not acknowledged."""
    fake = SimpleNamespace(
        _acked=defaultdict(list, {TP0: list(acked)}),
        _acked_index=defaultdict(set, {TP0: set(acked)}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {TP0: committed}),
        _read_offset=defaultdict(lambda: None, {TP0: read}),
        _unacked_messages=[SimpleNamespace(tp=TP0, offset=o) for o in in_flight],
        asked=[],
    )

    async def earliest_offsets(*partitions: TP) -> dict[TP, int]:
        fake.asked.extend(partitions)
        return dict.fromkeys(partitions, log_start)

    fake.earliest_offsets = earliest_offsets
    for begin, end in gaps:
        fake._gap[TP0].addi(begin, end)
    return fake


def new_offset(fake: Any) -> int | None:
    patch_faust_commits()
    return Consumer._new_offset(fake, TP0)  # type: ignore[arg-type]


def test_faust_unpatched_commits_past_the_unacknowledged_head() -> None:
    """The bug (faust-streaming issue 606): 2585 is the next record to read, not yet
    acknowledged, and Faust's own method commits 2590 over it."""
    patch_faust_commits()
    faust_new_offset = Consumer._faust_new_offset  # type: ignore[attr-defined]
    assert faust_new_offset(consumer(2585, [2586, 2587, 2588, 2589]), TP0) == 2590


def test_a_run_one_past_the_committed_offset_is_held() -> None:
    fake = consumer(2585, [2586, 2587, 2588, 2589])
    assert new_offset(fake) is None
    assert fake._acked[TP0] == [2586, 2587, 2588, 2589]  # kept for when 2585 comes


def test_the_run_commits_once_the_head_is_acknowledged() -> None:
    fake = consumer(2585, [2586, 2587, 2585, 2588, 2589, 2592])
    assert new_offset(fake) == 2590
    assert fake._acked[TP0] == [2592]
    assert fake._acked_index[TP0] == {2592}


@pytest.fixture
def ended(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The worker's exits (instead of ending the test process)."""
    calls: list[int] = []
    monkeypatch.setattr(commits, "_end_worker", lambda: calls.append(commits.EX_REREAD))
    return calls


async def test_a_head_in_flight_or_not_read_yet_is_waited_for(ended: list[int]) -> None:
    for fake in (
        consumer(2585, [2586, 2587], read=2587, in_flight=[2585]),  # being processed
        consumer(2585, [2586, 2587], read=2585),  # not delivered yet (read = the seek)
    ):
        assert new_offset(fake) is None
        await asyncio.sleep(0.01)
        assert fake.asked == [] and ended == []


async def test_a_head_the_stream_read_past_ends_the_worker(ended: list[int]) -> None:
    # The stale batch: 2586.. delivered after the seek to 2585, so Faust's reader dropped
    # 2585 when it came. Only a fresh consumer reads it again: exit without commit.
    fake = consumer(2585, [2586, 2587], read=2587, log_start=0)
    assert new_offset(fake) is None
    await asyncio.sleep(0.01)
    assert fake.asked == [TP0]
    assert ended == [75]
    assert fake._committed_offset[TP0] == 2585  # nothing committed past it


async def test_a_head_that_came_meanwhile_does_not_end_the_worker(ended: list[int]) -> None:
    fake = consumer(2585, [2586, 2587], read=2587, log_start=0)
    assert new_offset(fake) is None
    fake._unacked_messages.append(SimpleNamespace(tp=TP0, offset=2585))  # re-read meanwhile
    await asyncio.sleep(0.01)
    assert ended == []


async def test_a_head_deleted_by_retention_is_a_gap(ended: list[int]) -> None:
    fake = consumer(2585, [2586, 2587], read=2587, log_start=2586)
    assert new_offset(fake) is None
    await asyncio.sleep(0.01)
    assert ended == []
    assert new_offset(fake) == 2588  # gone from the log: Faust's rule


def test_a_committed_offset_of_zero_is_a_head_too() -> None:
    assert new_offset(consumer(0, [1, 2, 3])) is None
    assert new_offset(consumer(0, [0, 1, 2])) == 3


def test_offsets_that_do_not_exist_count_as_acknowledged() -> None:
    # 10 and 11 were compacted away (recorded as a gap by the stream): 12 follows 9.
    assert new_offset(consumer(10, [12, 13], gaps=[(10, 12)])) == 14


def test_without_a_committed_offset_the_first_run_commits() -> None:
    assert new_offset(consumer(None, [5, 6, 8])) == 7


@pytest.mark.parametrize(
    ("acked", "committed", "expected", "left"),
    [
        ([], 3, None, []),
        ([3], 3, 4, []),
        ([3, 4, 6], 3, 5, [6]),
        ([4, 5], 3, None, [4, 5]),
        ([4, 5], None, 6, []),
    ],
)
def test_committable_offset(
    acked: list[int], committed: int | None, expected: int | None, left: list[int]
) -> None:
    assert committable_offset(acked, committed) == expected
    assert acked == left
