"""A prompt version gathers every log made with it, a trace every node of a long agent run, a
session every trace of a conversation:
their states must not grow with their members (a prompt version once held every member and
crossed Kafka's record limit at a few thousand logs; a trace did at ~6,000 generations)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from processors.assembly import add_member, entity_summary
from processors.outcome import Outcome
from processors.stage2 import process_entities, process_groups


def _log(n: int, version: int, tokens: int) -> dict[str, Any]:
    return {
        "kind": "log",
        "id": f"log-{n}",
        "version": version,
        "prompt_tokens": tokens,
        "output_tokens": 1,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "tokens": tokens + 1,
        "cost": 0.0001,
        "start": f"2026-11-30T10:{n % 60:02d}:00+00:00",
        "end": None,
        "session_id": f"session-{n}",  # every log its own session: nothing may collect them
        "name": None,
    }


def _contribute(table: dict[str, Any], member: int, summary: dict[str, Any]) -> Outcome:
    item = {
        "group": "prompt_version",
        "project": "p",
        "id": "pv-1",
        "member": f"log:{member}",
        "summary": summary,
        "last_ts": 1_000.0 + member,
    }
    outcome = Outcome()
    process_groups([item], table.get, outcome)
    table.update(outcome.writes)
    return outcome


def test_a_prompt_version_state_stays_small_and_exact_over_thousands_of_logs() -> None:
    table: dict[str, Any] = {}
    members = 5_000
    for n in range(members):
        outcome = _contribute(table, n, _log(n, version=1, tokens=10))
    group = table["prompt_version:p/pv-1"]
    assert len(orjson.dumps(group)) < 1_000  # held every member before: ~1 MB here
    assert all(len(orjson.dumps(value)) < 1_000 for value in outcome.writes.values())
    (rollup,) = [o.value for o in outcome.outputs]
    assert rollup["counts"] == {"log": members}
    assert rollup["tokens"] == members * 11
    assert rollup["cost"] == members * 0.0001

    # The same version again changes nothing; a newer one replaces, never adds.
    assert _contribute(table, 7, _log(7, version=1, tokens=10)).writes == {}
    (rollup,) = [o.value for o in _contribute(table, 7, _log(7, version=2, tokens=1_010)).outputs]
    assert rollup["counts"] == {"log": members}
    assert rollup["tokens"] == members * 11 + 1_000
    assert rollup["start_time"] == "2026-11-30T10:00:00+00:00"


def _generation(n: int, version: int = 1, tokens: int = 10) -> dict[str, Any]:
    """A canonical generation entity of the one long trace ``t-long``."""
    return {
        "kind": "generation",
        "key": f"generation:p/g-{n}",
        "project": "p",
        "id": f"g-{n}",
        "version": version,
        "trace_root": "t-long",
        "trace_id": "t-long",
        "parent_id": "span-1",
        "prompt_tokens": tokens,
        "output_tokens": 1,
        "tokens": tokens + 1,
        "cost": 0.0002,
        "start_time": f"2026-11-30T10:{n % 60:02d}:00+00:00",
        "session_id": "conv-1",
        "last_ts": 1_000.0 + n,
    }


def _trace(table: dict[str, Any], entities: list[dict[str, Any]]) -> Outcome:
    outcome = Outcome()
    process_entities(entities, table.get, outcome)
    table.update(outcome.writes)
    return outcome


def test_a_trace_of_50000_generations_keeps_a_small_state_and_exact_totals() -> None:
    table: dict[str, Any] = {}
    members = 50_000
    for start in range(0, members, 500):  # records of 500 entities, as a window sends them
        outcome = _trace(table, [_generation(n) for n in range(start, start + 500)])
        assert max(len(orjson.dumps(v)) for v in outcome.writes.values()) < 1_000
    assert len(orjson.dumps(table["trace:p/t-long"])) < 1_000  # held every member before
    (rollup,) = [o.value for o in outcome.outputs]
    assert rollup["counts"] == {"generation": members}
    assert rollup["tokens"] == members * 11
    assert rollup["cost"] == members * 0.0002
    assert rollup["session_id"] == "conv-1"
    # A newer version of one member replaces its contribution; a redelivery adds nothing.
    (rollup,) = [o.value for o in _trace(table, [_generation(9, version=2, tokens=1_010)]).outputs]
    assert rollup["tokens"] == members * 11 + 1_000
    (rollup,) = [o.value for o in _trace(table, [_generation(9, version=2, tokens=1_010)]).outputs]
    assert rollup["tokens"] == members * 11 + 1_000 and rollup["counts"] == {"generation": members}


def test_a_trace_state_written_with_its_members_is_detached_without_double_counting() -> None:
    entities = [_generation(n) for n in range(20)]
    attached: dict[str, Any] = {}  # the state as the attached form wrote it
    for entity in entities[:10]:
        summary = entity_summary(entity)
        attached["trace:p/t-long"] = add_member(
            attached.get("trace:p/t-long"), entity["key"], summary, entity["last_ts"]
        )
    assert "members" in attached["trace:p/t-long"]
    # The first ten again (a redelivery), a newer version of one, and ten new ones.
    again = [*entities[:10], _generation(3, version=2, tokens=110), *entities[10:]]
    (upgraded,) = [o.value for o in _trace(attached, again).outputs]
    fresh: dict[str, Any] = {}
    _trace(fresh, entities)
    (expected,) = [o.value for o in _trace(fresh, [_generation(3, version=2, tokens=110)]).outputs]
    assert upgraded == expected
    assert "members" not in attached["trace:p/t-long"]


def _trace_summary(n: int, version: int = 1, tokens: int = 10) -> dict[str, Any]:
    """A trace rollup's summary as its session gets it (stage2.rollup_summary)."""
    return {
        "kind": "trace",
        "id": f"t-{n}",
        "version": version,
        "prompt_tokens": tokens,
        "output_tokens": 1,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "tokens": tokens + 1,
        "cost": 0.0003,
        "priced": 1,
        "error": False,
        "error_count": 0,
        "unpriced_count": 0,
        "start": f"2026-11-30T10:{n % 60:02d}:00+00:00",
        "end": f"2026-11-30T11:{n % 60:02d}:00+00:00",
    }


def _to_session(table: dict[str, Any], items: list[tuple[int, dict[str, Any]]]) -> Outcome:
    contributions = [
        {
            "group": "session",
            "project": "p",
            "id": "conv-big",
            "member": f"trace:t-{n}",
            "summary": summary,
            "last_ts": 1_000.0 + n,
        }
        for n, summary in items
    ]
    outcome = Outcome()
    process_groups(contributions, table.get, outcome)
    table.update(outcome.writes)
    return outcome


def test_a_session_of_50000_traces_keeps_a_small_state_and_exact_totals() -> None:
    table: dict[str, Any] = {}
    members = 50_000
    for start in range(0, members, 500):
        outcome = _to_session(table, [(n, _trace_summary(n)) for n in range(start, start + 500)])
        assert max(len(orjson.dumps(v)) for v in outcome.writes.values()) < 1_000
    assert len(orjson.dumps(table["session:p/conv-big"])) < 1_000  # ~7.5 MB if it held them
    (rollup,) = [o.value for o in outcome.outputs]
    assert rollup["counts"] == {"trace": members}
    assert rollup["tokens"] == members * 11
    assert rollup["cost"] == pytest.approx(members * 0.0003)
    assert rollup["start_time"] is None  # the sink computes a session's span
    # A trace retracted from the session (it moved to a smaller session id) is subtracted
    # exactly.
    retracted = {"kind": "trace", "id": "t-9", "version": 2, "retracted": True}
    (rollup,) = [o.value for o in _to_session(table, [(9, retracted)]).outputs]
    assert rollup["counts"] == {"trace": members - 1}
    assert rollup["tokens"] == (members - 1) * 11
