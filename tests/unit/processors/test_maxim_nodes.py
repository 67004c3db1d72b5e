"""Maxim's tool calls, retrievals, events, errors, attachments, sessions, feedback and
generation updates through the pure stages (issue 16): the rows they end in, the trace's
totals (latencies per kind, a caller's cost), whatever order the events arrive in."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.maxim import parse_lines, translate
from kernel.settings import Settings
from logflume.synthetic import pack_events
from processors.sequential import SequentialStages
from sinks.batch import Batch

LINES = Path(__file__).parents[1] / "gateway" / "maxim_lines_all.txt"
PARTITIONS = 3


def _events() -> list[bytes]:
    lines, _ = parse_lines(LINES.read_text())
    _, envelopes = translate("p", lines, {}, datetime(2026, 12, 2, tzinfo=UTC))
    return [orjson.dumps(e) for e in envelopes]


def _stages() -> SequentialStages:
    settings = Settings(partitions=PARTITIONS)
    return SequentialStages(
        settings.topics,
        partitions=PARTITIONS,
        max_event_bytes=settings.max_event_bytes,
        max_record_bytes=settings.max_record_bytes,
    )


def _rows(events: list[bytes], seed: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The final row of each table key (as the sink's batch coalesces the outputs)."""
    stages = _stages()
    records = pack_events(events, PARTITIONS, seed=seed, max_per_record=3)
    sink = Batch()
    for offset, (partition, value) in enumerate(records):
        emitted = stages.run_record(partition, offset, value, lambda *_: None)
        for role, values in (("entities", emitted.entities), ("rollups", emitted.rollups)):
            for item in values:
                assert sink.add_value(role, item)
    return {
        (spec.table, spec.version_column, *key): dict(zip(spec.names, spec.row(value), strict=True))
        for spec, rows in sink.rows.items()
        for key, value in rows.items()
    }


@pytest.fixture(scope="module")
def rows() -> dict[tuple[Any, ...], dict[str, Any]]:
    return _rows(_events(), seed=1)


def test_every_node_kind_is_a_row_of_trace_nodes(rows: dict[tuple[Any, ...], dict[str, Any]]):
    nodes = {(key[3], key[4]): row for key, row in rows.items() if key[0] == "trace_nodes"}
    assert {kind for kind, _ in nodes} == {
        "tool_call", "retrieval", "event", "error", "attachment", "session"
    }  # fmt: skip
    tool = nodes[("tool_call", "tc1")]
    assert (tool["name"], tool["description"], tool["args"]) == ("track2", "tracks", '{"p":1}')
    assert tool["result"] == "in transit" and tool["parent_id"] == "sp1"
    assert orjson.loads(tool["metrics"]) == {"tm": 2} and tool["end_time"] is not None
    failed = nodes[("tool_call", "ttc")]
    assert orjson.loads(failed["error"])["message"] == "fail"
    retrieval = nodes[("retrieval", "r1")]
    assert retrieval["query"] == "parcel" and orjson.loads(retrieval["documents"]) == ["a", "b"]
    session = nodes[("session", "s1")]
    assert session["trace_id"] is None and session["session_id"] == "s1"
    assert orjson.loads(session["tags"]) == {"a": "b", "k": "v"}
    attachment = orjson.loads(nodes[("attachment", "att-file")]["attachment"])
    assert attachment["mime_type"] == "text/plain" and "data" not in attachment
    feedback = [row for key, row in rows.items() if key[0] == "feedback"]
    assert {(f["trace_id"], f["session_id"], f["value"], f["comment"]) for f in feedback} == {
        (None, "s1", "5", "great"), ("t1", None, "3", "meh")
    }  # fmt: skip


def test_generation_updates_and_a_callers_cost(rows: dict[tuple[Any, ...], dict[str, Any]]):
    generation = next(r for k, r in rows.items() if k[0] == "generations" and k[3] == "g1")
    assert generation["model"] == "gpt-4o-mini" and generation["name"] == "n"
    assert orjson.loads(generation["model_parameters"]) == {"temperature": "0.3"}
    assert orjson.loads(generation["added_messages"]) == [{"role": "user", "content": "more"}]
    assert generation["cost"] == pytest.approx(0.3) and generation["cost_source"] == "provided"
    assert orjson.loads(generation["metrics"]) == {"gm": 1.0}


def test_the_trace_sums_its_nodes_latencies_and_costs(
    rows: dict[tuple[Any, ...], dict[str, Any]],
) -> None:
    (trace,) = [r for k, r in rows.items() if k[:2] == ("traces", "rollup_version")]
    latencies = orjson.loads(trace["latencies"])
    assert {"tool_call", "retrieval", "generation", "span"} <= latencies.keys()
    assert all(seconds >= 0 for seconds in latencies.values())
    counts = orjson.loads(trace["counts"])
    assert counts["tool_call"] == 2 and counts["retrieval"] == 2 and counts["error"] == 2
    assert counts["attachment"] == 4 and counts["event"] == 2  # the session's are not in it
    assert trace["status"] == "error" and trace["error_count"] >= 4
    assert trace["cost"] == pytest.approx(0.3)  # g1's, as its caller gave it


def test_any_order_gives_the_same_rows(rows: dict[tuple[Any, ...], dict[str, Any]]) -> None:
    events = _events()
    random.Random(5).shuffle(events)
    assert _rows(events, seed=9) == rows


def test_a_deleted_node_leaves_its_row_and_the_trace_totals() -> None:
    received = datetime(2026, 12, 3, tzinfo=UTC).isoformat()
    deletes = [
        orjson.dumps({"event_id": f"del-{kind}-{node}", "type": "delete", "ts": received,
                      "project": "p", "body": {"kind": kind, "id": node}})
        for kind, node in (("tool_call", "tc1"), ("session", "s1"))
    ]  # fmt: skip
    rows = _outputs([*_events(), *deletes])
    tool = rows[("entities", "tool_call", "tc1")]
    session = rows[("entities", "session", "s1")]
    assert tool["deleted"] is True and session["deleted"] is True  # the sink removes them
    (trace,) = [v for k, v in rows.items() if k[:2] == ("rollups", "trace")]
    assert trace["counts"]["tool_call"] == 1


def _outputs(events: list[bytes]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The newest output of each entity and rollup: (role, kind, id) -> value."""
    stages = _stages()
    emitted = stages.run_batch(
        (p, o, v) for o, (p, v) in enumerate(pack_events(events, PARTITIONS, seed=2))
    )
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for role, values in (("entities", emitted.entities), ("rollups", emitted.rollups)):
        for value in values:
            key = (role, value["kind"], value["id"])
            if key not in found or found[key]["version"] < value["version"]:
                found[key] = value
    return found
