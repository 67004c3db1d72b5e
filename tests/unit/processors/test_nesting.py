"""An event nested so deeply that its entity's state could not be encoded (orjson writes at
most 254 levels, and the state nests the event's values a few levels deeper) is a dead
letter with its reason; one just under that is merged, and its state and output encode."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from processors.outcome import Origin
from processors.stage1 import process_events_record


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


def _record(levels: int) -> bytes:
    event = {
        "event_id": "e1",
        "type": "log",
        "ts": "2026-03-02T09:00:00Z",
        "project": "p",
        "body": {"id": "l1", "metadata": {"deep": _deep(levels)}},
    }
    return json.dumps([event]).encode()  # the standard library writes any depth


@pytest.mark.parametrize("levels", [100, 199, 240, 247])
def test_a_deep_event_under_the_limit_is_merged_and_its_state_encodes(levels: int) -> None:
    outcome = process_events_record(
        _record(levels), Origin("raw", 0, 0), {}.get, max_event_bytes=1 << 20
    )
    assert not outcome.dead_letters and outcome.writes and outcome.outputs
    for state in outcome.writes.values():
        orjson.dumps(state)
    orjson.dumps([o.value for o in outcome.outputs])  # as a packed record


@pytest.mark.parametrize("levels", [248, 251, 400])
def test_a_deeper_event_is_a_dead_letter_with_its_reason(levels: int) -> None:
    outcome = process_events_record(
        _record(levels), Origin("raw", 0, 7), {}.get, max_event_bytes=1 << 20
    )
    assert not outcome.writes and not outcome.outputs
    (letter,) = outcome.dead_letters
    assert letter.origin == Origin("raw", 0, 7) and letter.index == 0
    assert letter.reason.startswith("body: cannot be encoded as JSON")
