"""A ``delete`` event through the three stages (no Kafka): the entity's output says
deleted, its trace, session and prompt version lose its contribution, a group left with no
member is removed, and later events of the entity are dropped."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kernel.settings import Settings
from processors.sequential import SequentialStages
from producers.contract import partition_for, routing_key, validate_event
from sinks.tables import removes, spec_for

PROMPT = {"model": "gpt-4o", "provider": "openai"}


def _event(n: int, etype: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": f"evt-{n}", "type": etype, "ts": f"2026-12-01T00:00:{n:02d}Z",
            "project": "p", "body": body}  # fmt: skip


def _log(n: int, log_id: str, tokens: tuple[int, int], **extra: Any) -> dict[str, Any]:
    body = {"id": log_id, "prompt": PROMPT, "session_id": "s1", "prompt_tokens": tokens[0],
            "output_tokens": tokens[1], "output": f"answer {n}", **extra}  # fmt: skip
    return _event(n, "log", body)


class Run:
    """The stages, and the newest output per row as the sink would keep it."""

    def __init__(self) -> None:
        settings = Settings(partitions=4)
        self.stages = SequentialStages.for_settings(settings)
        self.partitions = settings.partitions
        self.rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.offset = 0

    def send(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        records = []
        for event in events:
            partition = partition_for(routing_key(validate_event(event)), self.partitions)
            records.append((partition, self.offset, orjson.dumps([event])))
            self.offset += 1
        emitted = self.stages.run_batch(records)
        for role, values in (("entities", emitted.entities), ("rollups", emitted.rollups)):
            for value in values:
                spec = spec_for(role, value)
                assert spec is not None
                key = (spec.table, spec.version_column, value["id"])
                current = self.rows.get(key)
                if current is None or current["version"] < value["version"]:
                    self.rows[key] = value
        return emitted.entities

    def stored(self, table: str, version_column: str, row_id: str) -> dict[str, Any] | None:
        value = self.rows.get((table, version_column, row_id))
        if value is None:
            return None
        spec = spec_for("entities" if version_column == "version" else "rollups", value)
        assert spec is not None
        return None if removes(spec, value) else value


@pytest.fixture
def run() -> Run:
    run = Run()
    run.send(
        _log(1, "data_a", (100, 10), reference_id="r-a", trace_id="t1"),
        _log(2, "data_b", (50, 5), trace_id="t1"),
        _log(3, "data_c", (7, 3)),
    )
    return run


def _delete(n: int, **body: Any) -> dict[str, Any]:
    return _event(n, "delete", {"kind": "log", **body})


def test_deleting_a_log_corrects_its_trace_session_and_prompt_version(run: Run):
    version_id = run.stored("logs", "version", "data_a")["version_id"]  # type: ignore[index]
    (deleted,) = run.send(_delete(4, id="data_a", reference_id="r-a"))
    assert deleted["deleted"] is True and deleted["id"] == "data_a" and "output" not in deleted
    assert run.stored("logs", "version", "data_a") is None
    trace = run.stored("traces", "rollup_version", "t1")
    assert trace is not None and trace["counts"] == {"log": 1} and trace["prompt_tokens"] == 50
    session = run.stored("sessions", "rollup_version", "s1")
    assert session is not None and session["counts"] == {"trace": 2}
    assert (session["prompt_tokens"], session["output_tokens"]) == (57, 8)
    stats = run.stored("prompt_version_stats", "rollup_version", version_id)
    assert stats is not None and stats["counts"] == {"log": 2} and stats["prompt_tokens"] == 57
    # Later events of the deleted log are dropped (the deletion is re-emitted, unchanged).
    update = _event(5, "log_update", {"reference_id": "r-a", "output": "late", "duration": 1.0})
    assert [(e["deleted"], e["version"]) for e in run.send(update)] == [(True, deleted["version"])]


def test_a_group_without_members_is_removed(run: Run):
    run.send(_delete(4, reference_id="r-a"), _delete(5, id="data_b"), _delete(6, id="data_c"))
    for table, row_id in (("traces", "t1"), ("traces", "data_c"), ("sessions", "s1")):
        assert run.stored(table, "rollup_version", row_id) is None
    assert not any(run.stored("logs", "version", i) for i in ("data_a", "data_b", "data_c"))
