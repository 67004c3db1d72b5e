"""The output windows of the stages (``processors.topology``): the newest version per
identity, packed once per window; the same final rows whatever the window, with far fewer
derived records; an output too large for a record becomes a dead letter, live and in the
oracle alike."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.settings import Settings
from logflume.synthetic import generate_events, pack_events
from processors.outcome import Origin, Outcome, Output
from processors.sequential import Emitted, SequentialStages
from processors.topology import OutputWindow, StageRunner, entity_identity, stage_specs
from producers.contract import unpack_record
from tests.unit.processors.test_sequential import _final, _letters

PARTITIONS = 4
ORIGIN = Origin("raw", 0, 0)


def _entity(key: str, version: int, **extra: Any) -> Output:
    return Output(f"p/{key}".encode(), {"key": key, "version": version, **extra})


def test_window_keeps_the_newest_version_of_each_identity() -> None:
    window = OutputWindow({"out": entity_identity})
    window.add("out", [_entity("a", 2, n="a2"), _entity("b", 1, n="b1")], ORIGIN)
    window.add("out", [_entity("a", 1, n="a1-late"), _entity("b", 1, n="b1-again")], ORIGIN)
    window.add("out", [_entity("a", 3, n="a3")], ORIGIN)
    taken = window.take()
    assert sorted(h.output.value["n"] for h in taken["out"]) == ["a3", "b1-again"]
    assert window.take() == {} and window.records == 0


def _runner(settings: Settings, reduce: Any) -> StageRunner:
    spec = stage_specs(settings.topics)["entities"]
    return StageRunner(
        spec, reduce, partitions=settings.partitions, max_record_bytes=settings.max_record_bytes
    )


def test_flush_packs_one_record_per_partition_and_dead_letters_the_oversized() -> None:
    settings = Settings(partitions=PARTITIONS)
    big = "x" * settings.max_record_bytes

    def reduce(value: bytes, origin: Origin, lookup: Any) -> Outcome:
        n = int(value)
        outputs = [_entity(f"e{i}", n) for i in range(50)]
        if n == 3:
            outputs.append(_entity("huge", 1, blob=big))
        return Outcome(outputs=outputs)

    runner = _runner(settings, reduce)
    for n in range(1, 5):
        runner.reduce(str(n).encode(), Origin("raw", 1, n), lambda _k: None)
    assert runner.due(4, 60.0) and not runner.due(5, 60.0)
    flushed = runner.flush()
    partitions = [partition for _topic, partition, _value in flushed.records]
    assert len(partitions) == len(set(partitions)) <= PARTITIONS  # one record each
    values = [v for _t, _p, record in flushed.records for v in unpack_record(record)]
    assert len(values) == 50 and all(b'"version":4' in v for v in values)
    [letter] = flushed.dead_letters
    assert letter.origin == Origin("raw", 1, 3) and "over the record limit" in letter.reason
    assert not runner.due(1, 0.0)  # an empty window is never due


def test_a_raising_reducer_makes_one_dead_letter_and_holds_nothing() -> None:
    def reduce(value: bytes, origin: Origin, lookup: Any) -> Outcome:
        raise ValueError("bad record")

    runner = _runner(Settings(partitions=PARTITIONS), reduce)
    outcome = runner.reduce(b"x", ORIGIN, lambda _k: None)
    assert [d.reason for d in outcome.dead_letters] == ["ValueError: bad record"]
    assert runner.poison_records == 1 and runner.flush().records == []


def _run(records: list[tuple[int, bytes]], window: int) -> tuple[list[Emitted], int]:
    stages = SequentialStages.for_settings(Settings(partitions=PARTITIONS), window_records=window)
    emitted = stages.run_records(records)
    return emitted, stages.derived_records()


@pytest.fixture(scope="module")
def records() -> list[tuple[int, bytes]]:
    return pack_events(generate_events(4000, seed=5), PARTITIONS, seed=5)


@pytest.mark.parametrize("window", [3, 64, 100_000])
def test_any_window_gives_the_rows_of_record_by_record(
    records: list[tuple[int, bytes]], window: int
) -> None:
    expected, sent_per_record = _run(records, 1)
    got, sent = _run(records, window)
    assert _final(got) == _final(expected)
    assert _letters(got) == _letters(expected) and _letters(got)
    assert sent * 2 < sent_per_record  # the fan-out the windows exist to remove
