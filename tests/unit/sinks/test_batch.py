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
