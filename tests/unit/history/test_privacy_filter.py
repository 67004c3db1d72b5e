"""What an export keeps: events of unsaved logs without payload fields, no event of a
deleted entity (the delete events themselves kept)."""

from __future__ import annotations

from typing import Any

from logflume.history.privacy import PrivacyFilter
from tests.payloads import log_payload, new_marker


def _event(etype: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": "e", "type": etype, "ts": "2026-12-01T00:00:00Z", "project": "p",
            "body": body}  # fmt: skip


def _filter(*events: dict[str, Any]) -> PrivacyFilter:
    privacy = PrivacyFilter()
    for event in events:
        privacy.note(event)
    return privacy


def test_every_event_of_an_unsaved_log_loses_its_payload_even_one_sent_before():
    mark = new_marker("export")
    early = _event("log_update", {"reference_id": "r", "duration": 1.0, **log_payload(mark)})
    create = _event("log", {"id": "data_1", "reference_id": "r", "save": False, "output": mark})
    by_id = _event("log_update", {"id": "data_1", "output": mark})
    saved = _event("log", {"id": "data_2", "output": mark})
    privacy = _filter(early, create, by_id, saved)
    assert privacy.screen(early)["body"] == {"reference_id": "r", "duration": 1.0}
    assert privacy.screen(create)["body"] == {"id": "data_1", "reference_id": "r", "save": False}
    assert privacy.screen(by_id)["body"] == {"id": "data_1"}
    assert privacy.screen(saved) == saved


def test_no_event_of_a_deleted_entity_is_kept_but_the_deletion():
    log = _event("log", {"id": "data_1", "reference_id": "r"})
    feedback = _event("feedback", {"id": "f", "reference_id": "r", "value": True})
    result = _event("generation_result", {"generation_id": "g", "trace_id": "t", "result": {}})
    kept = _event("span", {"id": "s2", "trace_id": "t"})
    deletions = [_event("delete", {"kind": "log", "id": "data_1", "reference_id": "r"}),
                 _event("delete", {"kind": "generation", "id": "g"})]  # fmt: skip
    privacy = _filter(log, feedback, result, kept, *deletions)
    assert [privacy.screen(e) for e in (log, feedback, result)] == [None, None, None]
    assert privacy.screen(kept) == kept
    assert [privacy.screen(d) for d in deletions] == deletions
