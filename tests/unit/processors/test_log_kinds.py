"""Humanloop's Flow, Tool and Evaluator logs through the stages (the oracle the live
pipeline is compared with): a Flow log is a trace's root, the logs that name it in
``trace_id`` are its members and its totals; ``log_status=incomplete`` keeps the trace
running; only prompt logs count in a prompt version; an evaluator log judges its parent."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from kernel.settings import Settings
from processors.sequential import SequentialStages
from producers.contract import ContractError, validate_event
from producers.contract.ids import file_id_for_path, file_version_id, prompt_version_id
from sinks.batch import Batch

PROMPT = {"model": "gpt-4o", "provider": "openai"}
_ids = itertools.count(1)


def _event(etype: str, body: dict[str, Any], second: int = 0) -> dict[str, Any]:
    return {"event_id": f"evt-{next(_ids)}", "type": etype,
            "ts": f"2026-12-01T10:00:{second:02d}+00:00", "project": "p", "body": body}  # fmt: skip


def _run(events: list[dict[str, Any]]) -> Batch:
    settings = Settings()
    stages = SequentialStages(
        settings.topics, partitions=1, max_event_bytes=settings.max_event_bytes,
        max_record_bytes=settings.max_record_bytes,
    )  # fmt: skip
    records = [(0, orjson.dumps([e])) for e in events]  # one event per record, in order
    sink = Batch()
    for emitted in stages.run_records(records):
        assert not emitted.dead_letters, emitted.dead_letters
        for role, values in (("entities", emitted.entities), ("rollups", emitted.rollups)):
            for value in values:
                sink.add_value(role, value)
    return sink


def _rows(sink: Batch, table: str, column: str = "version") -> dict[str, dict[str, Any]]:
    return {key[-1]: value for spec, rows in sink.rows.items() if spec.table == table
            and spec.version_column == column for key, value in rows.items()}  # fmt: skip


def _flow_world(complete: bool) -> list[dict[str, Any]]:
    flow = {"id": "flow-1", "log_kind": "flow", "path": "support/flow",
            "file": {"attributes": {"team": "a"}}, "log_status": "incomplete",
            "inputs": {"q": "where?"}, "reference_id": "ticket 4711/flow"}  # fmt: skip
    prompt = {"id": "pl-1", "path": "support/answer", "prompt": PROMPT,
              "prompt_tokens": 100, "output_tokens": 50, "trace_id": "flow-1",
              "trace_parent_log_id": "flow-1"}  # fmt: skip
    tool = {"id": "tl-1", "log_kind": "tool", "path": "tools/lookup",
            "file": {"function": {"name": "lookup"}}, "output": "found", "prompt_cost": 0.5,
            "trace_id": "flow-1", "trace_parent_log_id": "flow-1"}  # fmt: skip
    judge = {"id": "ev-1", "log_kind": "evaluator", "path": "evals/helpful",
             "file": {"return_type": "boolean"}, "parent_id": "pl-1", "judgment": True}  # fmt: skip
    events = [_event("log", prompt, 1), _event("log", tool, 2), _event("log", flow, 0),
              _event("log", judge, 3)]  # fmt: skip
    if complete:  # by reference id, as PATCH /logs?reference_id= sends it
        update = {"reference_id": "ticket 4711/flow", "log_status": "complete", "output": "ok"}
        events.append(_event("log_update", update, 4))
    return events


def test_a_flow_log_is_the_root_of_a_running_trace_with_its_members_totals():
    sink = _run(_flow_world(complete=False))
    logs = _rows(sink, "logs")
    flow = next(v for v in logs.values() if v["id"] == "flow-1")
    assert (flow["log_kind"], flow["log_status"], flow["trace_root"]) == (
        "flow", "incomplete", "flow-1"
    )  # fmt: skip
    assert flow["prompt_id"] == file_id_for_path("flow", "support/flow")
    assert flow["prompt_id"].startswith("fl_") and flow["version_id"].startswith("flv_")
    assert flow["version_id"] == file_version_id("flow", {"attributes": {"team": "a"}})
    assert flow["cost"] is None and flow["cost_source"] is None  # nothing to price
    tool = logs["tl-1"]
    assert (tool["log_kind"], tool["trace_root"], tool["cost_source"]) == (
        "tool", "flow-1", "provided"
    )  # fmt: skip
    trace = _rows(sink, "traces", "rollup_version")["flow-1"]
    assert trace["status"] == "running"
    assert trace["counts"] == {"log": 3}
    assert (trace["prompt_tokens"], trace["output_tokens"]) == (100, 50)
    assert trace["cost"] == pytest.approx(100 * 2.5e-6 + 50 * 10e-6 + 0.5)
    # The evaluator log judges pl-1; it is a trace of its own, not a member of the flow's.
    judge = logs["ev-1"]
    assert (judge["log_kind"], judge["parent_id"], judge["trace_root"]) == (
        "evaluator", "pl-1", "ev-1"
    )  # fmt: skip
    assert judge["judgment"] is True and judge["prompt_id"].startswith("ev_")


def test_marking_the_flow_complete_completes_its_trace():
    sink = _run(_flow_world(complete=True))
    flow = next(v for v in _rows(sink, "logs").values() if v["id"] == "flow-1")
    assert (flow["log_status"], flow["output"]) == ("complete", "ok")
    assert _rows(sink, "traces", "rollup_version")["flow-1"]["status"] == "completed"


def test_only_prompt_logs_count_in_a_prompt_version():
    sink = _run(_flow_world(complete=True))
    stats = _rows(sink, "prompt_version_stats", "rollup_version")
    assert set(stats) == {prompt_version_id(PROMPT)}  # no version of the flow, tool, judge
    assert stats[prompt_version_id(PROMPT)]["counts"] == {"log": 1}
    assert [p.prompt_id for p in sink.prompts.values()] == [
        file_id_for_path("prompt", "support/answer")
    ]


def test_the_contract_refuses_a_kind_with_the_wrong_details():
    cases = [
        ({"id": "x", "log_kind": "flow", "prompt": PROMPT}, "body.prompt"),
        ({"id": "x", "file": {"a": 1}}, "body.file"),
        ({"id": "x", "log_kind": "evaluator", "judgment": 1.0}, "body.parent_id"),
        ({"id": "x", "log_kind": "agent"}, "body.log_kind"),
        ({"id": "x", "log_status": "done"}, "body.log_status"),
    ]
    for body, field in cases:
        with pytest.raises(ContractError) as caught:
            validate_event(_event("log", body))
        assert caught.value.fields == (field,), (body, caught.value)
