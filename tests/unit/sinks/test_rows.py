"""A table spec's generated row function builds exactly the row its columns' extracts say,
for every spec and every kind of stage output the synthetic stream makes (no network)."""

from __future__ import annotations

from typing import Any

from kernel.settings import Settings
from logflume.synthetic import generate_events, pack_events
from processors.sequential import SequentialStages
from sinks.batch import Batch
from sinks.tables import LOGS_BY_REFERENCE, SPECS, TableSpec


def _by_extracts(spec: TableSpec, value: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(extract(value) for _, _, extract in spec.columns)


def test_every_row_equals_its_columns_extracts() -> None:
    records = pack_events(list(generate_events(3000, seed=11)), 4)
    stages = SequentialStages.for_settings(Settings())
    emitted = stages.run_batch([(p, i, value) for i, (p, value) in enumerate(records)])
    batch = Batch()
    for value in emitted.entities:
        batch.add_value("entities", value)
    for value in emitted.rollups:
        batch.add_value("rollups", value)
    kinds = ("log", "feedback", "trace", "span", "generation")
    covered = {SPECS[("entities", kind)] for kind in kinds} | {LOGS_BY_REFERENCE}
    covered |= {SPECS[("rollups", kind)] for kind in ("trace", "session", "prompt_version")}
    assert covered <= set(batch.rows)
    for spec, rows in batch.rows.items():
        for value in rows.values():
            row = spec.row(value)
            assert row == _by_extracts(spec, value), spec.table
            assert len(row) == len(spec.columns)


def test_missing_fields_are_null_and_json_columns_are_json_text() -> None:
    spec = SPECS[("entities", "generation")]
    value = {"kind": "generation", "tags": {"a": [1, None]}}
    row = dict(zip(spec.names, spec.row(value), strict=True))
    assert row["tags"] == '{"a":[1,null]}'
    assert row["id"] is None and row["messages"] is None
    assert row["total_tokens"] is None  # an extract of its own (int of "tokens")


def test_specs_hash_by_identity() -> None:
    spec = SPECS[("entities", "log")]
    assert spec != LOGS_BY_REFERENCE and hash(spec) == hash(spec)
    assert {spec: 1}[SPECS[("entities", "log")]] == 1
