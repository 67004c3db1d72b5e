"""Stage 1 in shard processes gives what it gives in one process (no network)."""

from __future__ import annotations

import pytest

from kernel.settings import Settings
from logflume.history.shards import Stage1Shards
from logflume.synthetic import generate_events, pack_events
from processors.sequential import SequentialStages

PARTITIONS = 5


def _records() -> list[tuple[int, int, bytes]]:
    offsets: dict[int, int] = {}
    found = []
    for partition, value in pack_events(generate_events(3000, seed=9), PARTITIONS, seed=9):
        offsets[partition] = offsets.get(partition, -1) + 1
        found.append((partition, offsets[partition], value))
    return found


@pytest.mark.parametrize("count", [1, 2])
async def test_shards_equal_one_process(count: int) -> None:
    settings = Settings(partitions=PARTITIONS)
    records = _records()
    local = SequentialStages(
        settings.topics,
        partitions=PARTITIONS,
        max_event_bytes=settings.max_event_bytes,
        max_record_bytes=settings.max_record_bytes,
    )
    shards = Stage1Shards(
        count,
        topic_prefix=settings.topic_prefix,
        partitions=PARTITIONS,
        max_event_bytes=settings.max_event_bytes,
        max_record_bytes=settings.max_record_bytes,
    )
    try:
        for start in range(0, len(records), 60):  # state carries over between batches
            batch = records[start : start + 60]
            want = local.entities_batch(batch)
            await shards.submit(batch)
            got = await shards.collect()
            assert sorted(got.entities, key=lambda e: e["key"]) == sorted(
                want.entities, key=lambda e: e["key"]
            )
            assert sorted(map(repr, got.dead_letters)) == sorted(map(repr, want.dead_letters))
            assert got.duplicates == want.duplicates
        assert local.tables["entities"]  # the stream did build state
    finally:
        shards.close()
