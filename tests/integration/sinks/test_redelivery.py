"""Redelivery is a no-op: the same stage outputs read again (by another consumer group, in
other batch boundaries, or published twice) leave every row byte-for-byte unchanged,
``updated_at`` included; and the first pass stores exactly the oracle's rows."""

from __future__ import annotations

import pytest

from logflume.synthetic import generate_events, pack_events
from tests.integration.sinks.harness import SinkEnv, running_sink
from tests.integration.sinks.stream import oracle_mismatches, publish, run_stages, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _diff(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    changed = []
    for table in before:
        gone = sorted(set(before[table]) - set(after[table]))[:2]
        new = sorted(set(after[table]) - set(before[table]))[:2]
        if gone or new or len(before[table]) != len(after[table]):
            changed.append(
                f"{table}: {len(before[table])} -> {len(after[table])} rows; was {gone}, now {new}"
            )
    return changed


async def test_redelivered_batches_leave_every_row_unchanged(sink_env: SinkEnv) -> None:
    settings = sink_env.settings
    events = generate_events(3000, seed=11)
    stream = run_stages(settings, pack_events(events, settings.partitions), len(events))
    published = await publish(settings, stream.records)

    async with running_sink(settings) as first:
        await first.wait_records(published)
        await first.stop()
    assert await oracle_mismatches(sink_env.conn, stream.oracle) == []
    before = await snapshot(sink_env.conn)
    assert sum(len(rows) for rows in before.values()) > 1000

    # Another consumer group reads everything again, in much smaller batches (so older
    # versions of many rows are written again, after the newest).
    replay = sink_env.settings_with(sink_batch_values=97, sink_linger_ms=0)
    async with running_sink(replay, group_id=f"{settings.sink_group}-replay") as second:
        await second.wait_records(published)
        await second.stop()
    assert _diff(before, await snapshot(sink_env.conn)) == []

    # The same records published a second time reach the first group as new offsets.
    republished = await publish(settings, stream.records)
    async with running_sink(settings) as again:
        await again.wait_records(republished)
        await again.stop()
    after = await snapshot(sink_env.conn)
    assert _diff(before, after) == []
    assert after == before
