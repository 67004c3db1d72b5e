"""A dead letter of a save=false log keeps its reason and origin, not its payload: an
invalid event that says save=false, an invalid update of a log whose state is
save=false, and a record the reducer could not handle."""

from __future__ import annotations

from typing import Any

import orjson

from processors.outcome import Origin
from processors.stage1 import process_events_record
from processors.unsaved import private_record
from tests.payloads import log_payload, new_marker

ORIGIN = Origin("t.events", 3, 42)


def _event(etype: str, body: dict[str, Any], n: int) -> dict[str, Any]:
    return {"event_id": f"evt-{n}", "type": etype, "ts": "2026-01-01T00:00:00Z",
            "project": "p", "body": body}  # fmt: skip


def test_an_invalid_save_false_log_is_dead_lettered_without_its_payload():
    mark = new_marker("dl")
    bad = _event("log", {"id": "data_1", "save": False, "prompt_tokens": -1,
                         **log_payload(mark)}, 1)  # fmt: skip
    saved = _event("log", {"id": "data_2", "prompt_tokens": -1, "output": mark}, 2)
    record = orjson.dumps([bad, saved])
    outcome = process_events_record(record, ORIGIN, {}.get, max_event_bytes=1 << 20)
    unsaved, other = outcome.dead_letters
    assert "body.prompt_tokens" in unsaved.reason and unsaved.origin == ORIGIN
    assert mark.encode() not in unsaved.raw
    assert orjson.loads(unsaved.raw)["body"] == {"id": "data_1", "save": False,
                                                  "prompt_tokens": -1}  # fmt: skip
    assert mark.encode() in other.raw  # a saved log's dead letter is kept whole


def test_an_invalid_update_of_a_save_false_log_is_dead_lettered_without_its_payload():
    mark = new_marker("dl")
    states = {"log:p/ref-1": {"kind": "log", "save": False}}
    update = _event("log_update", {"reference_id": "ref-1", "output": mark,
                                   "duration": -5}, 3)  # fmt: skip
    outcome = process_events_record(orjson.dumps([update]), ORIGIN, states.get,
                                    max_event_bytes=1 << 20)  # fmt: skip
    (letter,) = outcome.dead_letters
    assert "body.duration" in letter.reason and mark.encode() not in letter.raw


def test_a_poison_record_keeps_the_events_of_unsaved_logs_without_payload():
    mark = new_marker("dl")
    record = orjson.dumps([
        _event("log", {"id": "data_1", "save": False, "output": mark}, 1),
        _event("log", {"id": "data_2", "output": "kept"}, 2),
    ])  # fmt: skip
    kept = orjson.loads(private_record(record, {}.get))
    assert mark not in orjson.dumps(kept).decode()
    assert kept[1]["body"]["output"] == "kept"
    assert private_record(b"not json", {}.get) == b"not json"
