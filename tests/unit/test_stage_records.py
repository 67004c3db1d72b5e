"""The stages emit what ``producers.contract.stage_records`` defines: the synthetic stream
(with updates, duplicates, deletions and bad events) and every line kind maxim-py sends (the
capture of ``tests/unit/gateway``) run through the pure stages, and
every record of every internal topic is held to its TypedDict: no key the definition lacks,
every required key present. A field added to a stage's output, or renamed, without its
definition fails here."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.maxim import parse_lines, translate
from kernel.settings import Settings
from logflume.synthetic import generate_events, generate_heavy_events, pack_events
from processors.sequential import SequentialStages
from producers.contract.deadletters import DeadLetter
from producers.contract.stage_records import (
    Contribution,
    DeadLetterRecord,
    FeedbackEntity,
    GenerationEntity,
    LogEntity,
    MemberSummary,
    NodeEntity,
    Rollup,
    SpanEntity,
    TraceEntity,
)

NODES = ("tool_call", "retrieval", "event", "error", "attachment", "session")
ENTITIES: dict[str, Any] = {
    "log": LogEntity,
    "feedback": FeedbackEntity,
    "trace": TraceEntity,
    "span": SpanEntity,
    "generation": GenerationEntity,
    **dict.fromkeys(NODES, NodeEntity),
}
MAXIM_LINES = Path(__file__).parent / "gateway" / "maxim_lines_all.txt"


def _maxim_events() -> list[bytes]:
    lines, _ = parse_lines(MAXIM_LINES.read_text())
    _, envelopes = translate("acme", lines, {}, datetime(2026, 3, 2, 9, tzinfo=UTC))
    return [orjson.dumps(envelope) for envelope in envelopes]


def _check(value: dict[str, Any], typed: Any, what: str) -> None:
    declared = set(typed.__annotations__)
    for base in typed.__mro__:
        declared |= set(getattr(base, "__annotations__", {}))
    unknown = set(value) - declared
    assert not unknown, f"{what} carries keys its definition lacks: {sorted(unknown)}"
    missing = set(typed.__required_keys__) - set(value)
    assert not missing, f"{what} lacks required keys: {sorted(missing)}"


@pytest.fixture(scope="module")
def published() -> dict[str, list[Any]]:
    settings = Settings(partitions=4)
    events = generate_events(4000, seed=11) + generate_heavy_events(3000, seed=12)
    events += _maxim_events()
    records = pack_events(events, settings.partitions, seed=11)
    stages = SequentialStages.for_settings(settings, window_records=8)
    topics = settings.topics
    seen: dict[str, list[Any]] = {name: [] for name in topics.all()}

    def publish(topic: str, _partition: int | None, value: bytes) -> None:
        decoded = orjson.loads(value)
        seen[topic].extend(decoded if isinstance(decoded, list) else [decoded])

    stages.run_records(records, publish)
    return {
        "entities": seen[topics.entities],
        "groups": seen[topics.groups],
        "rollups": seen[topics.rollups],
        "deadletter": seen[topics.deadletter],
    }


def test_entity_outputs_match_their_definitions(published: dict[str, list[Any]]) -> None:
    kinds = Counter(value["kind"] for value in published["entities"])
    assert set(kinds) == set(ENTITIES), kinds  # the stream exercises every kind
    for value in published["entities"]:
        _check(value, ENTITIES[value["kind"]], f"entity {value['kind']}")


def test_contributions_and_summaries_match(published: dict[str, list[Any]]) -> None:
    assert published["groups"]
    for value in published["groups"]:
        _check(value, Contribution, "contribution")
        _check(value["summary"], MemberSummary, f"{value['summary']['kind']} summary")


def test_rollups_match(published: dict[str, list[Any]]) -> None:
    assert {value["kind"] for value in published["rollups"]} == {
        "trace",
        "session",
        "prompt_version",
    }
    for value in published["rollups"]:
        _check(value, Rollup, f"rollup {value['kind']}")


def test_dead_letters_match_and_read_back(published: dict[str, list[Any]]) -> None:
    assert published["deadletter"]  # the synthetic stream holds bad events
    for value in published["deadletter"]:
        _check(value, DeadLetterRecord, "dead letter")
        letter = DeadLetter.from_json(value)
        assert letter.to_json() == {k: value[k] for k in letter.to_json()}
