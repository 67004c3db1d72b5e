"""The real stage reducers in a real worker: contract events in, canonical entities and
trace, session and prompt-version rollups out."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from kernel.settings import Settings
from producers.contract import encode_event, pack_record, partition_for, routing_key, validate_event
from tests.integration.processors.conftest import Consumed, Workers, consume, produce_records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TRACES = 20


def _trace_events(n: int, ts: str) -> list[dict]:
    trace, span, gen = f"tr{n}", f"sp{n}", f"gen{n}"
    return [
        {
            "event_id": f"{trace}-1",
            "type": "trace",
            "ts": ts,
            "project": "p",
            "body": {"id": trace, "name": "chat", "session_id": f"s{n % 3}"},
        },
        {
            "event_id": f"{trace}-2",
            "type": "span",
            "ts": ts,
            "project": "p",
            "body": {"id": span, "trace_id": trace, "name": "retrieve"},
        },
        {
            "event_id": f"{trace}-3",
            "type": "generation",
            "ts": ts,
            "project": "p",
            "body": {
                "id": gen,
                "trace_id": trace,
                "parent_id": span,
                "provider": "openai",
                "model": "gpt-4o",
            },
        },
        {
            "event_id": f"{trace}-4",
            "type": "log",
            "ts": ts,
            "project": "p",
            "body": {
                "id": f"data_{n}",
                "path": "support/answer",
                "prompt": {"model": "gpt-4o"},
                "trace_id": trace,
                "output": "ok",
                "prompt_tokens": 10,
                "output_tokens": 5,
            },
        },
    ]


def _latest(consumed: Consumed, kind: str) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for item in consumed.items():
        if (
            item["kind"] == kind
            and item["version"] >= latest.get(item["id"], {"version": -1})["version"]
        ):
            latest[item["id"]] = item
    return latest


async def test_contract_events_become_entities_and_rollups(settings: Settings, workers: Workers):
    workers.start("real", real=True)
    ts = datetime.now(UTC).isoformat()
    grouped: dict[int, list[bytes]] = {}
    for n in range(TRACES):
        for raw in _trace_events(n, ts):
            event = validate_event(raw)
            partition = partition_for(routing_key(event), settings.partitions)
            grouped.setdefault(partition, []).append(encode_event(event))
    await produce_records(settings, [(p, pack_record(evs)) for p, evs in grouped.items()])

    entity_keys = {
        f"{kind}:p/{prefix}{n}"
        for n in range(TRACES)
        for kind, prefix in (
            ("trace", "tr"),
            ("span", "sp"),
            ("generation", "gen"),
            ("log", "data_"),
        )
    }
    entities = await consume(
        settings, settings.topics.entities, lambda c: entity_keys <= {i["key"] for i in c.items()}
    )
    assert {i["trace_root"] for i in entities.items()} == {f"tr{n}" for n in range(TRACES)}

    def complete(c: Consumed) -> bool:
        traces, sessions = _latest(c, "trace"), _latest(c, "session")
        versions = _latest(c, "prompt_version").values()
        return (
            len(traces) == TRACES
            and all(len(t["counts"]) == 4 for t in traces.values())
            and sum(s["counts"].get("trace", 0) for s in sessions.values()) == TRACES
            and sum(v["counts"].get("log", 0) for v in versions) == TRACES
        )

    rollups = await consume(settings, settings.topics.rollups, complete)
    for trace in _latest(rollups, "trace").values():
        assert trace["counts"] == {"generation": 1, "log": 1, "span": 1, "trace": 1}
        assert trace["prompt_tokens"] == 10 and trace["output_tokens"] == 5
    assert set(_latest(rollups, "session")) == {"s0", "s1", "s2"}
    (version,) = _latest(rollups, "prompt_version").values()
    assert version["counts"] == {"log": TRACES}
    dead = await consume(settings, settings.topics.deadletter, lambda c: True, timeout_s=5)
    assert dead.records == []
    assert orjson.dumps(version)  # rollups are plain JSON
