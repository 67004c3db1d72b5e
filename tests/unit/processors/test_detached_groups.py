"""A prompt version gathers every log made with it: its state must not grow with them
(it once held every member and crossed Kafka's record limit at a few thousand logs)."""

from __future__ import annotations

from typing import Any

import orjson

from processors.outcome import Outcome
from processors.stage2 import process_groups


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
