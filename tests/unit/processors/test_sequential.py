"""Replay's fast path (stage 2 and groups once per batch over the newest outputs) gives
the same final rows as the live topology run record by record, whatever the batch size."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.settings import Settings
from logflume.synthetic import generate_events, pack_events
from processors.sequential import Emitted, SequentialStages
from sinks.batch import Batch

PARTITIONS = 4


def _stages(settings: Settings) -> SequentialStages:
    return SequentialStages(
        settings.topics,
        partitions=settings.partitions,
        max_event_bytes=settings.max_event_bytes,
        max_record_bytes=settings.max_record_bytes,
    )


def _final(emitted: list[Emitted]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The row each table key ends with, as the sink's batch coalesces it: the output of
    the highest version, with the payload values only older ones carried."""
    sink = Batch()
    for batch in emitted:
        for role, values in (("entities", batch.entities), ("rollups", batch.rollups)):
            for value in values:
                assert sink.add_value(role, value)
    return {
        (spec.table, spec.version_column, *key): spec.row(value)
        for spec, rows in sink.rows.items()
        for key, value in rows.items()
    }


def _letters(emitted: list[Emitted]) -> set[tuple[Any, ...]]:
    return {
        (d.origin.topic, d.origin.partition, d.origin.offset, d.index, d.event_id, d.reason)
        for batch in emitted
        for d in batch.dead_letters
    }


@pytest.fixture(scope="module")
def records() -> list[tuple[int, int, bytes]]:
    offsets: dict[int, int] = {}
    found = []
    for partition, value in pack_events(generate_events(4000, seed=3), PARTITIONS, seed=3):
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        found.append((partition, offset, value))
    return found


@pytest.mark.parametrize("batch", [1, 7, 100, 100_000])
def test_batched_equals_record_by_record(records: list[tuple[int, int, bytes]], batch: int) -> None:
    settings = Settings(partitions=PARTITIONS)
    live = _stages(settings)
    published: list[str] = []
    expected = [
        live.run_record(p, o, v, lambda topic, _p, _v: published.append(topic))
        for p, o, v in records
    ]
    replay = _stages(settings)
    got = [replay.run_batch(records[i : i + batch]) for i in range(0, len(records), batch)]

    want = _final(expected)
    assert len(want) > 1000  # a real history: logs, traces, spans, sessions, prompts...
    assert {key[0] for key in want} >= {"logs", "traces", "spans", "generations", "sessions"}
    assert _final(got) == want
    assert _letters(got) == _letters(expected)
    assert _letters(got)  # the generator's invalid events
    assert settings.topics.groups in published  # the record path went through every topic


def test_a_batch_emits_each_entity_once(records: list[tuple[int, int, bytes]]) -> None:
    emitted = _stages(Settings(partitions=PARTITIONS)).run_batch(records)
    keys = [value["key"] for value in emitted.entities]
    assert len(keys) == len(set(keys))
    assert emitted.events_records == len(records)
    assert emitted.duplicates > 0  # the generator re-sends ~3% of its events
