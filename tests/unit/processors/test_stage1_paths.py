"""Stage 1 reads a record three ways (the contract's msgspec mirror, the contract's models
over the whole record, each event alone): whichever way a record takes, the states, outputs
and dead letters are the same."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from logflume.synthetic import generate_events, pack_events
from processors import stage1
from processors.outcome import Origin
from processors.stage1 import process_events_record

LIMIT = 1 << 20


def run(records: list[tuple[int, bytes]]) -> tuple[dict[str, Any], list[Any], list[Any], int]:
    table: dict[str, Any] = {}
    outputs: list[Any] = []
    dead: list[Any] = []
    duplicates = 0
    for offset, (partition, value) in enumerate(records):
        outcome = process_events_record(
            value, Origin("events", partition, offset), table.get, max_event_bytes=LIMIT
        )
        table.update(outcome.writes)
        outputs += [(o.key, o.value) for o in outcome.outputs]
        dead += [(d.index, d.reason, d.event_id) for d in outcome.dead_letters]
        duplicates += outcome.duplicates
    return table, outputs, dead, duplicates


@pytest.mark.parametrize("payload_bytes", [0, 200])
def test_the_mirror_changes_nothing_but_the_cost(
    monkeypatch: pytest.MonkeyPatch, payload_bytes: int
) -> None:
    events = generate_events(4000, seed=5, payload_bytes=payload_bytes)
    # Duplicated records too: redelivery must meet the same states either way.
    records = pack_events(events, 4, seed=5)
    records += records[: len(records) // 3]
    fast = run(records)
    taken = sum(stage1.fast_record(value) is not None for _, value in records)
    assert taken >= 0.9 * len(records)  # the fast path is the common one
    monkeypatch.setattr(stage1, "fast_record", lambda value: None)
    assert run(records) == fast


def test_a_record_of_one_bad_event_keeps_its_good_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    good = {
        "event_id": "e1",
        "type": "trace",
        "ts": "2026-01-01T00:00:00+00:00",
        "project": "p",
        "body": {"id": "t1", "name": "chat", "start_time": "2026-01-01T00:00:00.5+01:00"},
    }
    bad = {**good, "event_id": "e2", "body": {"id": ""}}
    value = orjson.dumps([good, bad])
    assert stage1.fast_record(value) is None
    table, outputs, dead, _ = run([(0, value)])
    assert [key for key, _ in outputs] and len(table) == 1
    assert [(index, event_id) for index, _, event_id in dead] == [(1, "e2")]
    (entity,) = [value for _, value in outputs]
    # the datetimes as the contract's JSON dump writes them, whichever path
    assert entity["start_time"] == "2026-01-01T00:00:00.500000+01:00"
    alone = run([(0, orjson.dumps([good]))])
    assert alone[1] == outputs


def test_nan_read_by_the_standard_library_is_refused_not_made_null() -> None:
    """A record orjson refuses for a NaN (Python's ``json.dumps`` writes one) is read with
    the standard library; orjson would re-encode the NaN as null, which the mirror would
    accept, so that event is judged by the contract: a dead letter naming the field."""
    good = {
        "event_id": "e1",
        "type": "log",
        "ts": "2026-01-01T00:00:00+00:00",
        "project": "p",
        "body": {"id": "d1", "prompt_tokens": 3},
    }
    bad = {**good, "event_id": "e2", "body": {"id": "d2", "prompt_tokens": float("nan")}}
    value = json.dumps([good, bad]).encode()
    assert b"NaN" in value
    _, outputs, dead, _ = run([(0, value)])
    assert [(index, event_id) for index, _, event_id in dead] == [(1, "e2")]
    assert dead[0][1].startswith("body.prompt_tokens")
    assert [entity["id"] for _, entity in outputs] == ["d1"]


def test_a_valid_record_the_mirror_refuses_is_judged_whole_on_its_own_bytes() -> None:
    """A path the mirror is stricter about ("a/...b" is valid), and numbers that orjson
    re-encodes longer (1E5 -> 100000.0): the record is exactly at the size limit and valid,
    so nothing is dead-lettered (event by event, the re-encoded event would be over it)."""
    body = b'{"id":"d","path":"a/...b","metadata":{"x":[' + b",".join([b"1E5"] * 20) + b"]}}"
    value = (
        b'[{"event_id":"e","type":"log","ts":"2026-01-01T00:00:00Z","project":"p","body":%b}]'
        % body
    )
    assert stage1.fast_record(value) is None
    outcome = process_events_record(
        value, Origin("events", 0, 0), {}.get, max_event_bytes=len(value)
    )
    assert not outcome.dead_letters
    assert [o.value["id"] for o in outcome.outputs] == ["d"]


def _inputs(records: list[tuple[int, bytes]]) -> int:
    return sum(
        process_events_record(
            value, Origin("events", partition, offset), {}.get, max_event_bytes=LIMIT
        ).inputs
        for offset, (partition, value) in enumerate(records)
    )


def test_every_path_counts_the_events_it_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """``logflume_stage_inputs_total{stage="entities"}`` stayed at 0 while the mirror's path
    (nearly every record) and the contract's whole-record path did not count."""
    records = pack_events(generate_events(2000, seed=9), 4, seed=9)
    events = sum(len(orjson.loads(value)) for _, value in records)
    assert _inputs(records) == events  # the mirror's path, and one by one for bad records
    monkeypatch.setattr(stage1, "fast_record", lambda value: None)
    assert _inputs(records) == events  # the contract's models over whole records
