"""The watchdog's reading of a worker (processors.watchdog) against a fake Faust app and
consumer: which partitions it tracks, their lag, the rebalance in their place, when it
exits, and what /healthz, /readyz and the liveness metrics say."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import orjson
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

from kernel.metrics import with_probes as _with_probes
from processors.metrics import LivenessCollector
from processors.watchdog import REBALANCE, Watchdog
from tests.integration.pipeline_env import metric

EVENTS, ENTITIES, CHANGELOG = "lf.events", "lf.entities", "lf.processors-entity_state-changelog"


class FakeConsumer:
    def __init__(self, assigned: set[TP]) -> None:
        self.assigned = assigned
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self.highwaters: dict[TP, int] = {}

    def assignment(self) -> set[TP]:
        return self.assigned

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters.get(tp)


class FakeApp:
    def __init__(self, consumer: FakeConsumer | None) -> None:
        self._consumer = consumer
        self.rebalancing = False
        self.rebalancing_count = 1
        self.should_stop = False

    @property
    def consumer(self) -> FakeConsumer:
        assert self._consumer is not None
        return self._consumer


class Exited(Exception):
    pass


def watchdog(app: FakeApp, monkeypatch: pytest.MonkeyPatch) -> tuple[Watchdog, list[str]]:
    dog = Watchdog(
        app,  # type: ignore[arg-type]
        sources={EVENTS: "entities", ENTITIES: "traces"},
        changelogs={CHANGELOG},
        stall_s=10,
        rebalance_bound_s=36,
        bootstrap_servers="127.0.0.1:1",
    )
    lines: list[str] = []

    def exit_(line: str, stacks: str) -> None:
        lines.append(line)
        raise Exited(line)

    monkeypatch.setattr(dog, "_exit", exit_)
    return dog, lines


def test_tracks_the_source_partitions_with_the_broker_log_offsets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e0, e1, t0, c0 = TP(EVENTS, 0), TP(EVENTS, 1), TP(ENTITIES, 0), TP(CHANGELOG, 0)
    consumer = FakeConsumer({e0, e1, t0, c0})
    consumer._read_offset.update({e0: 49, e1: 9, t0: 4, c0: 500})
    consumer._committed_offset.update({e0: 40, e1: 10, t0: 5})
    consumer.highwaters.update({e0: 90, c0: 900})  # what the fetcher last saw
    dog, _ = watchdog(FakeApp(consumer), monkeypatch)
    dog._offsets = {(EVENTS, 0): (0, 100), (EVENTS, 1): (0, 10), (ENTITIES, 0): (2, 5)}
    dog._check(0.0)
    states = {state.key: state for state in dog.health.states}
    assert set(states) == {e0, e1, t0}  # never the changelog
    assert states[e0].sample.lag == 60 and states[e0].sample.position == 50
    assert states[e1].sample.lag == 0 and states[t0].sample.lag == 0
    report = dog.stage_report()
    assert report["entities"] == (False, 0.0, {0: 60, 1: 0})
    assert report["traces"] == (False, 0.0, {0: 0})


def test_exits_once_a_partition_with_lag_stands_still_for_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e0, e1 = TP(EVENTS, 0), TP(EVENTS, 1)
    consumer = FakeConsumer({e0, e1})
    consumer._committed_offset.update({e0: 40, e1: 0})
    dog, lines = watchdog(FakeApp(consumer), monkeypatch)
    dog._offsets = {(EVENTS, 0): (0, 100), (EVENTS, 1): (0, 10_000)}
    for now in range(10):
        consumer._read_offset[e1] = now * 100  # partition 1 moves on
        dog._check(float(now))
    assert dog.stage_report()["entities"][1] == 9.0
    alive, body = dog.liveness()
    assert alive and body["status"] == "ok"
    consumer._read_offset[e1] = 1000
    with pytest.raises(Exited):
        dog._check(10.0)
    assert lines == [f"stalled: no progress on {EVENTS}:0 (lag 60, still for 10 s)"]


def test_a_rebalance_is_tracked_instead_with_its_longer_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e0, c0 = TP(EVENTS, 0), TP(CHANGELOG, 0)
    consumer = FakeConsumer({e0, c0})
    consumer._committed_offset[e0] = 0
    app = FakeApp(consumer)
    dog, _ = watchdog(app, monkeypatch)
    dog._offsets = {(EVENTS, 0): (0, 100)}
    app.rebalancing = True  # the sources are paused: they do not count
    for now in range(20):
        consumer._read_offset[c0] = now * 50  # the recovery reads the changelog
        dog._check(float(now))
    assert [s.key for s in dog.health.states] == [REBALANCE]
    ready, body = dog.readiness()
    assert not ready and body["reason"] == "rebalancing or recovering its tables"
    for now in range(20, 55):  # the recovery stops reading: stuck 36 s later, not 10
        dog._check(float(now))
    with pytest.raises(Exited, match="stalled: no progress on rebalance"):
        dog._check(55.0)


def test_ready_only_when_started_assigned_and_recovered(monkeypatch: pytest.MonkeyPatch) -> None:
    app = FakeApp(None)
    dog, _ = watchdog(app, monkeypatch)
    dog._check(0.0)
    assert dog.readiness()[1]["reason"] == "starting"
    consumer = FakeConsumer(set())
    app._consumer = consumer
    dog._check(1.0)
    assert dog.readiness()[1]["reason"] == "no partitions assigned"
    consumer.assigned = {TP(EVENTS, 3)}
    dog._check(2.0)
    ready, body = dog.readiness()
    assert ready and body["status"] == "ready" and body["assigned"] == [f"{EVENTS}:3"]


def test_a_blocked_loop_is_not_live_and_every_stage_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dog, _ = watchdog(FakeApp(FakeConsumer({TP(EVENTS, 0)})), monkeypatch)
    dog._check(0.0)
    monkeypatch.setattr(dog, "loop_age_s", lambda: 12.0)  # the beat stopped 12 s ago
    alive, body = dog.liveness()
    assert not alive and body["status"] == "stalled" and body["loop_heartbeat_age_s"] == 12
    assert {stage: r[0] for stage, r in dog.stage_report().items()} == {
        "entities": True,
        "traces": True,
    }


def test_probes_and_liveness_metrics_on_the_metrics_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e0 = TP(EVENTS, 2)
    consumer = FakeConsumer({e0})
    consumer._committed_offset[e0] = 7
    dog, _ = watchdog(FakeApp(consumer), monkeypatch)
    dog._offsets = {(EVENTS, 2): (0, 10)}
    dog._check(0.0)
    dog._check(4.0)
    registry = CollectorRegistry()
    registry.register(LivenessCollector(dog))
    text = generate_latest(registry).decode()
    assert metric(text, "logflume_stage_partition_lag", stage="entities", partition="2") == 3
    assert metric(text, "logflume_stage_seconds_without_progress", stage="entities") == 4
    assert metric(text, "logflume_stage_stalled", stage="entities") == 0

    app = _with_probes(registry, {"/healthz": dog.liveness, "/readyz": dog.readiness})

    def get(path: str) -> tuple[str, Any]:
        answer: list[str] = []
        body = b"".join(
            app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda s, h: answer.append(s))
        )
        return answer[0], body

    status, body = get("/healthz")
    assert status == "200 OK" and orjson.loads(body)["partitions"][0]["lag"] == 3
    monkeypatch.setattr(dog, "loop_age_s", lambda: 11.0)
    assert get("/healthz")[0] == get("/readyz")[0] == "503 Service Unavailable"
    status, body = get("/metrics")
    assert status.startswith("200") and b"logflume_stage_stalled" in body


async def test_the_thread_exits_when_the_loop_stops_beating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dog, lines = watchdog(FakeApp(None), monkeypatch)
    dog._heartbeat -= 12  # the loop's last beat, 12 s ago
    with pytest.raises(Exited):
        await asyncio.wait_for(dog._guard_loop(), 5)
    assert lines == ["stalled: the event loop has not run for 13 s"]


async def test_the_thread_leaves_a_beating_loop_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    dog, lines = watchdog(FakeApp(None), monkeypatch)
    guard = asyncio.create_task(dog._guard_loop())
    for _ in range(25):  # 2.5 s, beating as the task does
        dog._heartbeat = time.monotonic()
        await asyncio.sleep(0.1)
    assert not guard.done() and not lines
    guard.cancel()
