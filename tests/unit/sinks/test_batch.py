"""A sink batch keeps the newest version of each row and where it came from (no network)."""

from __future__ import annotations

from typing import Any

import orjson

from kernel.settings import Settings
from sinks.batch import Batch
from sinks.consumer import Sink
from sinks.tables import LOGS, TRACE_ROLLUPS, TRACES


def _trace(version: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "trace", "project": "p", "id": "t1", "version": version, **extra}


def test_the_highest_version_wins_whatever_the_order_and_keeps_its_origin() -> None:
    batch = Batch()
    assert batch.add_value("entities", _trace(2, name="two"), ("e", 0, 10, 0))
    assert batch.add_value("entities", _trace(3, name="three"), ("e", 1, 11, 2))
    assert batch.add_value("entities", _trace(1, name="one"), ("e", 0, 12, 0))
    assert batch.add_value("entities", _trace(3, name="three again"), ("e", 0, 13, 5))
    assert batch.rows[TRACES] == {("p", "t1"): _trace(3, name="three")}
    assert batch.origins == {(TRACES, ("p", "t1")): ("e", 1, 11, 2)}
    assert len(batch) == 4  # values read, before coalescing


def test_entity_and_rollup_of_one_trace_are_separate_rows_with_separate_origins() -> None:
    batch = Batch()
    batch.add_value("entities", _trace(1), ("e", 0, 0, 0))
    batch.add_value("rollups", _trace(7), ("r", 0, 0, 0))
    assert set(batch.rows) == {TRACES, TRACE_ROLLUPS}
    assert batch.origins[(TRACE_ROLLUPS, ("p", "t1"))] == ("r", 0, 0, 0)


def test_a_value_without_origin_is_still_taken() -> None:
    batch = Batch()
    assert batch.add_value("entities", {"kind": "log", "project": "p", "id": "l", "version": 1})
    assert batch.rows[LOGS] and not batch.origins
    assert not batch.add_value("entities", {"kind": "metric", "project": "p", "id": "m"})


def test_the_consumer_records_each_value_s_topic_partition_offset_and_index() -> None:
    settings = Settings(topic_prefix="u", kafka_bootstrap_servers="127.0.0.1:1")
    sink = Sink(settings)
    topics = settings.topics
    batch = Batch()
    record = orjson.dumps([_trace(1), {"kind": "metric", "project": "p", "id": "x"}, _trace(2)])
    sink._add(batch, topics.entities, 3, 41, record)
    sink._add(batch, topics.entities, 3, 42, b"not json")
    sink._add(batch, topics.rollups, 1, 7, None)  # a tombstone: only its offset counts
    assert batch.origins == {(TRACES, ("p", "t1")): (topics.entities, 3, 41, 2)}
    letters = [(d.topic, d.partition, d.offset, d.index) for d in batch.dead_letters]
    assert letters == [(topics.entities, 3, 41, 1), (topics.entities, 3, 42, -1)]
    assert batch.offsets == {(topics.entities, 3): 43, (topics.rollups, 1): 8}


def test_a_log_with_prompt_details_but_no_version_id_names_no_prompt_version() -> None:
    # Stage 1 merges a flow create (no version) and a later create with prompt details into
    # a flow log with a prompt and a prompt id but no version id (a real stage-1 output).
    # Its prompt version row (version_id NOT NULL) once failed the batch on every restart.
    flow = {"kind": "log", "project": "p", "id": "data_1", "version": 2, "log_kind": "flow",
            "prompt": {"model": "gpt-4o", "provider": "openai"}, "prompt_id": "pr_1",
            "version_id": None}  # fmt: skip
    batch = Batch()
    assert batch.add_value("entities", flow, ("e", 0, 1, 0))
    assert batch.rows[LOGS] == {("p", "data_1"): flow}  # the log is written
    assert batch.prompts == {}
    without_key = {k: v for k, v in flow.items() if k != "version_id"}
    assert batch.add_value("entities", {**without_key, "id": "data_2"}, ("e", 0, 2, 0))
    assert batch.prompts == {}  # (a KeyError once: the log dead-lettered as malformed)
    prompt_log = {**flow, "id": "data_3", "log_kind": "prompt", "version_id": "pv_1"}
    assert batch.add_value("entities", prompt_log, ("e", 0, 3, 0))
    assert list(batch.prompts) == [("p", "pv_1")]
