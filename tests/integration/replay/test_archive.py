"""export -> import round trip against the real broker: an archived history imported into
other topics replays to the same tables as the original, and importing it twice changes
nothing downstream (stage 1 drops the event ids it has seen; the sink keeps versions)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from logflume.history.archive import read_archive
from logflume.history.verify import verify
from tests.integration.replay.history import logflume_ok, produce_history
from tests.services import Services, drop_database, scratch_environment, with_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

EVENTS = 6000


async def test_export_import_twice_replays_to_the_same_tables(
    services: Services, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    home = tmp_path / "home"
    archive = tmp_path / "history.jsonl.zst"
    async with (
        scratch_environment(
            services, f"lf_arch_src_{tag}", topic_prefix=f"lf_arch_src_{tag}", partitions=4
        ) as source,
        scratch_environment(
            services, f"lf_arch_dst_{tag}", topic_prefix=f"lf_arch_dst_{tag}", partitions=4
        ) as target,
    ):
        events, _ = await produce_history(source, EVENTS, seed=21)
        out = logflume_ok(source, home, "export", "--since", "earliest", "-o", str(archive))
        assert f"exported {events:,} events" in out
        lines = list(read_archive(archive))
        assert len(lines) == events

        logflume_ok(source, home, "replay")  # the reference: the original topic, replayed
        out = logflume_ok(target, home, "import", str(archive))
        invalid = int(out.split("skipped ")[1].split(" ")[0])
        assert 0 < invalid < events // 100  # the generator's ~0.5% invalid events
        assert f"imported {events - invalid:,} events" in out

        once = with_database(services.dsn, f"lf_arch_once_{tag}")
        try:
            logflume_ok(target, home, "replay", "--database-url", once)
            logflume_ok(target, home, "import", str(archive))  # the same history a second time
            logflume_ok(target, home, "replay")  # into the target's own database
            same = await verify(once, target.dsn, events_topic=target.topics.events)
        finally:
            await drop_database(services, f"lf_arch_once_{tag}")
        assert same.equal, [t for t in same.tables if not t.equal]

        result = await verify(source.dsn, target.dsn, events_topic=target.topics.events)
        differing = {t.table for t in result.tables if not t.equal}
        # Everything but the dead letters of the invalid events, which are not re-published.
        assert differing == {"dead_letters"}
        (letters,) = [t for t in result.tables if t.table == "dead_letters"]
        assert (letters.rows_a, letters.rows_b) == (invalid, 0)
        # Every table the synthetic history fills (it has no Maxim nodes: trace_nodes).
        assert all(t.rows_a > 0 for t in result.tables if t.table != "trace_nodes")
