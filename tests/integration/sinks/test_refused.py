"""Rows PostgreSQL refuses become dead letters (one each, under their Kafka origin) while
the rest of their batch lands, and the sink goes on; redelivery stores no second letter."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson
import pytest

from logflume.synthetic import BASE, event
from processors.outcome import Origin
from processors.stage1 import process_events_record
from processors.stage2 import process_entities_record
from producers.contract import pack_record
from tests.integration.sinks.harness import SinkEnv, running_sink
from tests.integration.sinks.stream import Oracle, Published, oracle_mismatches, publish, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REFUSED = 'SELECT topic, "partition", "offset", event_index, event_id, raw FROM dead_letters'


def _canonical(events: list[bytes]) -> dict[str, dict[str, Any]]:
    """Stage 1's canonical entities for ``events``, by id."""
    outcome = process_events_record(
        pack_record(events), Origin("raw", 0, 0), {}.get, max_event_bytes=1 << 20
    )
    assert not outcome.dead_letters
    return {o.value["id"]: o.value for o in outcome.outputs}


def _record(*values: dict[str, Any]) -> bytes:
    return pack_record([orjson.dumps(v) for v in values])


async def test_refused_rows_become_dead_letters_and_the_rest_lands(
    sink_env: SinkEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sinks")
    p, topics = "acme", sink_env.settings.topics
    made = _canonical(
        [
            event(
                "l1",
                "log",
                BASE,
                p,
                {
                    "id": "data_ok",
                    "output": "fine",
                    "prompt_tokens": 2,
                    "created_at": BASE.isoformat(),
                },
            ),
            event(
                "g1",
                "generation",
                BASE,
                p,
                {"id": "gen-ok", "trace_id": "tr-1", "provider": "openai", "model": "gpt-4o"},
            ),
            event("f1", "feedback", BASE, p, {"id": "fb-ok", "log_id": "data_ok", "value": 1.0}),
        ]
    )
    log, gen, fb = made["data_ok"], made["gen-ok"], made["fb-ok"]

    def variant(base: dict[str, Any], new_id: str, **changes: Any) -> dict[str, Any]:
        return {**base, "id": new_id, "key": f"{base['kind']}:{p}/{new_id}", **changes}

    ok = [variant(log, "data_ok_2", output="also fine"), log, gen, fb]
    refused = {
        # value -> (topic, partition, record offset, index in the record)
        "data_bad_start": variant(log, "data_bad_start", start_time="not-a-time"),
        "data_bad_created": variant(log, "data_bad_created", created_at="2026-02-30T10:00:00Z"),
        "data_bad_cost": variant(log, "data_bad_cost", cost=1e12),  # numeric(20, 10)
        "data_bad_batches": variant(log, "data_bad_batches", batches={"not": "an array"}),
        "gen-bad-end": variant(gen, "gen-bad-end", end_time="2026-13-01T00:00:00Z"),
        "fb-bad-target": variant(fb, "fb-bad-target", log_id=None),  # CHECK constraint
    }
    rolled = process_entities_record(_record(gen), Origin("entities", 0, 0), {}.get)
    rollup_ok = rolled.outputs[0].value
    assert rollup_ok["id"] == "tr-1"
    rollup_bad = {**rollup_ok, "id": "tr-2", "start_time": "soon"}
    r = refused
    records = [
        Published(
            topics.entities,
            0,
            _record(log, r["data_bad_start"], gen, r["data_bad_created"], r["fb-bad-target"]),
        ),
        Published(
            topics.entities,
            1,
            _record(r["data_bad_cost"], ok[0], r["gen-bad-end"], fb, r["data_bad_batches"]),
        ),
        Published(topics.rollups, 2, _record(rollup_ok, rollup_bad)),
    ]
    origins = {
        "data_bad_start": (topics.entities, 0, 0, 1),
        "data_bad_created": (topics.entities, 0, 0, 3),
        "fb-bad-target": (topics.entities, 0, 0, 4),
        "data_bad_cost": (topics.entities, 1, 0, 0),
        "gen-bad-end": (topics.entities, 1, 0, 2),
        "data_bad_batches": (topics.entities, 1, 0, 4),
        "tr-2": (topics.rollups, 2, 0, 1),
    }
    oracle = Oracle()
    for value in ok:
        oracle.add("entities", value)
    oracle.add("rollups", rollup_ok)
    later = _canonical([event("l9", "log", BASE, p, {"id": "data_later", "output": "later"})])

    async with running_sink(sink_env.settings) as sink:
        published = await publish(sink_env.settings, records)
        await sink.wait_records(published)
        # The sink goes on: a record published afterwards lands.
        published += await publish(
            sink_env.settings, [Published(topics.entities, 3, _record(*later.values()))]
        )
        await sink.wait_records(published)
        assert sum(report.refused for report in sink.reports) == len(origins)
    oracle.add("entities", later["data_later"])

    conn = sink_env.conn
    assert await oracle_mismatches(conn, oracle) == []
    letters = await conn.fetch(REFUSED + " WHERE reason LIKE '%PostgreSQL refused the row%'")
    assert {row["event_id"]: tuple(row)[:4] for row in letters} == origins
    expected_raw = {**refused, "tr-2": rollup_bad}
    assert all(orjson.loads(row["raw"]) == expected_raw[row["event_id"]] for row in letters)
    # One warning per batch with refusals, and no payload in any sink log line.
    sink_lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("sinks")]
    assert sink_lines and all("refused" in line for line in sink_lines)
    assert not any(
        word in line for line in sink_lines for word in ("not-a-time", "2026-", "soon", "data_bad")
    )

    # Redelivery (another group reads everything again) stores no second dead letter.
    before = await snapshot(conn)
    async with running_sink(sink_env.settings, group_id="replay") as replay:
        await replay.wait_records(published)
    assert await snapshot(conn) == before


async def test_a_prompt_path_claimed_by_two_prompt_ids_does_not_stall_the_sink(
    sink_env: SinkEnv,
) -> None:
    """Two prompt ids for one path (a caller gave ``prompt_id`` once, only ``path`` the
    other time) break the unique index on prompts (project, path); that must not make the
    batch fail: the logs land and the path keeps its first prompt."""
    p, topics = "acme", sink_env.settings.topics
    first = {"model": "gpt-4o", "provider": "openai", "template": "v1"}
    second = {"model": "gpt-4o", "provider": "openai", "template": "v2"}
    made = _canonical(
        [
            event(
                "a",
                "log",
                BASE,
                p,
                {"id": "data_a", "path": "shared/prompt", "prompt_id": "pr-alpha", "prompt": first},
            ),
            event("b", "log", BASE, p, {"id": "data_b", "path": "shared/prompt", "prompt": second}),
            event(
                "c",
                "log",
                BASE,
                p,
                {"id": "data_c", "path": "shared/other", "prompt_id": "pr-gamma", "prompt": first},
            ),
            event(
                "d",
                "log",
                BASE,
                p,
                {"id": "data_d", "path": "shared/other", "prompt_id": "pr-delta", "prompt": second},
            ),
            event("e", "log", BASE, p, {"id": "data_e", "output": "after"}),
        ]
    )
    oracle = Oracle()
    async with running_sink(sink_env.settings) as sink:
        # data_a first, alone; then data_b (conflicts with a stored prompt) and data_c /
        # data_d (conflict with each other inside one statement); then ordinary traffic.
        published = 0
        for partition, ids in enumerate((["data_a"], ["data_b", "data_c", "data_d"], ["data_e"])):
            values = [made[i] for i in ids]
            for value in values:
                oracle.add("entities", value)
            published += await publish(
                sink_env.settings, [Published(topics.entities, partition, _record(*values))]
            )
            await sink.wait_records(published)

    conn = sink_env.conn
    # Logs as the oracle says; prompt versions are checked below.
    problems = await oracle_mismatches(conn, oracle)
    assert [m for m in problems if not m.startswith("prompt_versions")] == []
    assert await conn.fetchval("SELECT count(*) FROM logs") == 5
    prompts = await conn.fetch("SELECT path, id FROM prompts ORDER BY path")
    assert [(r["path"], r["id"]) for r in prompts] == [
        ("shared/other", "pr-gamma"),
        ("shared/prompt", "pr-alpha"),
    ]
    # A version is recorded only under a prompt row that exists (no dangling foreign key).
    orphans = await conn.fetchval(
        "SELECT count(*) FROM prompt_versions v LEFT JOIN prompts p "
        "ON p.project = v.project AND p.id = v.prompt_id WHERE p.id IS NULL"
    )
    assert orphans == 0


async def test_a_log_whose_id_changes_still_lands_under_its_reference_id(
    sink_env: SinkEnv,
) -> None:
    p, topics = "acme", sink_env.settings.topics
    later = event(
        "ea",
        "log",
        BASE + timedelta(seconds=1),
        p,
        {"id": "data_1", "reference_id": "r", "output": "first seen"},
    )
    earlier = event("eb", "log", BASE, p, {"id": "data_0", "reference_id": "r", "output": "x"})
    state: dict[str, Any] = {}
    values = []
    for raw in (later, earlier):
        outcome = process_events_record(
            pack_record([raw]), Origin("raw", 0, 0), state.get, max_event_bytes=1 << 20
        )
        state.update(outcome.writes)
        values += [o.value for o in outcome.outputs]
    assert [(v["id"], v["version"]) for v in values] == [("data_1", 1), ("data_0", 2)]
    async with running_sink(sink_env.settings) as sink:
        published = await publish(
            sink_env.settings, [Published(topics.entities, 0, _record(v)) for v in values]
        )
        await sink.wait_records(published)
    rows = await sink_env.conn.fetch("SELECT id, version FROM logs WHERE reference_id = 'r'")
    assert [(r["id"], r["version"]) for r in rows] == [("data_0", 2)]


async def test_malformed_stage_outputs_become_dead_letters_and_the_sink_goes_on(
    sink_env: SinkEnv,
) -> None:
    """Values the processors would never write (a foreign producer on the entities topic,
    a bug): fields that cannot become their columns once ended the sink at the same batch
    on every restart. Each is now its own dead letter, and the rest of its batch lands."""
    p, topics = "acme", sink_env.settings.topics
    made = _canonical(
        [
            event("l1", "log", BASE, p, {"id": "data_fine", "output": "fine"}),
            event(
                "g1",
                "generation",
                BASE,
                p,
                {"id": "gen-x", "trace_id": "tr-x", "provider": "openai", "model": "gpt-4o"},
            ),
        ]
    )
    log, gen = made["data_fine"], made["gen-x"]
    text_tokens = {**gen, "id": "gen-text-tokens", "tokens": "12k"}
    oracle = Oracle()
    oracle.add("entities", log)
    oracle.add("entities", gen)
    later = _canonical([event("l9", "log", BASE, p, {"id": "data_after", "output": "after"})])
    async with running_sink(sink_env.settings) as sink:
        published = await publish(
            sink_env.settings, [Published(topics.entities, 0, _record(log, text_tokens, gen))]
        )
        await sink.wait_records(published)
        published += await publish(
            sink_env.settings, [Published(topics.entities, 1, _record(*later.values()))]
        )
        await sink.wait_records(published)
    oracle.add("entities", later["data_after"])
    conn = sink_env.conn
    assert await oracle_mismatches(conn, oracle) == []
    letters = await conn.fetch(
        'SELECT topic, "partition", "offset", event_index, event_id, reason FROM dead_letters'
    )
    assert [(r["event_id"], tuple(r)[:4]) for r in letters] == [
        ("gen-text-tokens", (topics.entities, 0, 0, 1))
    ]
    assert letters[0]["reason"].startswith("generations: malformed stage output: ValueError")
