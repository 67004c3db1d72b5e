"""Metrics without a network: the gateway's request metrics by route template and its
/metrics page, the processors' collector over StageStats, the sink's batch observer, and
the role ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from gateway import Components, GatewaySettings, create_app
from gateway.nodes import MemoryNodeIndex
from kernel.metrics import SINK_REGISTRY, role_port
from kernel.settings import Settings
from processors.agents import StageStats
from processors.metrics import StageCollector
from processors.outcome import Origin
from processors.stage2 import process_groups_record
from producers.sdk import MemoryTransport, Spool
from sinks.consumer import BatchReport
from sinks.metrics import observe_sink_batch
from tests.integration.pipeline_env import metric


class OneKey:
    async def project_for(self, key: str) -> str | None:
        return "proj-m" if key == "key-m" else None


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 16, fsync="batch")
    parts = Components(transport=MemoryTransport(partitions=2), spool=spool, keys=OneKey(),
                       nodes=MemoryNodeIndex())  # fmt: skip
    options = GatewaySettings(linger_ms=0, held_sweep_s=0)
    with TestClient(create_app(Settings(), options, parts)) as client:
        yield client


def test_gateway_counts_requests_by_route_template(client: TestClient) -> None:
    def scrape() -> str:
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        return answer.text

    before = scrape()
    event = {"event_id": "ev-m1", "type": "trace", "ts": "2026-11-22T09:00:00+00:00",
             "body": {"id": "tr-m1", "name": "t"}}  # fmt: skip
    assert (
        client.post("/v1/events", json=[event], headers={"X-API-KEY": "key-m"}).status_code == 202
    )
    assert client.get("/traces/tr-secret-id", headers={"X-API-KEY": "key-m"}).status_code == 404
    assert client.get("/traces/x").status_code == 401
    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("logflume_gateway_requests_total", route="/v1/events", status="202") == 1
    assert moved("logflume_gateway_requests_total", route="/traces/{id}", status="404") == 1
    assert moved("logflume_gateway_requests_total", route="/traces/{id}", status="401") == 1
    assert moved("logflume_gateway_request_seconds_count", route="/v1/events") == 1
    assert moved("logflume_gateway_events_sent_total") == 1
    for lost in ("events_rejected_from_spool", "spool_corrupt"):  # exposed, nothing lost
        assert f"logflume_gateway_{lost}_total 0.0" in after
    assert "tr-secret-id" not in after
    assert "logflume_sink_" not in after and "logflume_stage_" not in after


def test_stage_collector_reads_each_stages_stats() -> None:
    cold = SimpleNamespace(rows=lambda: 7)
    table = SimpleNamespace(data={"log:p/a": {}, "log:p/b": {}}, cold=cold, demoted_total=9)
    stages = {"entities": SimpleNamespace(stats=StageStats(records=5, inputs=70, outputs=40),
                                          table=table),
              "traces": SimpleNamespace(stats=StageStats(records=2, dead_letters=1),
                                        table=SimpleNamespace(data={}, cold=None,
                                                              demoted_total=0))}  # fmt: skip
    registry = CollectorRegistry()
    registry.register(StageCollector(stages))  # type: ignore[arg-type]
    stages["entities"].stats.records += 1  # read at scrape time
    text = generate_latest(registry).decode()
    assert metric(text, "logflume_stage_records_total", stage="entities") == 6
    assert metric(text, "logflume_stage_outputs_total", stage="entities") == 40
    assert metric(text, "logflume_stage_inputs_total", stage="entities") == 70
    assert metric(text, "logflume_stage_dead_letters_total", stage="traces") == 1
    assert metric(text, "logflume_stage_duplicates_total") == 0
    assert metric(text, "logflume_stage_state_entries", stage="entities") == 2
    assert metric(text, "logflume_stage_state_entries", stage="traces") == 0
    assert metric(text, "logflume_stage_cold_entries", stage="entities") == 7
    assert metric(text, "logflume_stage_cold_entries", stage="traces") == 0
    assert metric(text, "logflume_stage_states_moved_to_disk_total", stage="entities") == 9


def test_sink_batches_feed_counters_and_histograms() -> None:
    before = generate_latest(SINK_REGISTRY).decode()
    observe_sink_batch(BatchReport(records=3, values=120, rows={"logs": 100, "traces": 20},
                                   refused=1, write_seconds=0.04))  # fmt: skip
    after = generate_latest(SINK_REGISTRY).decode()

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("logflume_sink_values_total") == 120
    assert moved("logflume_sink_records_total") == 3
    assert moved("logflume_sink_rows_total", table="logs") == 100
    assert moved("logflume_sink_refused_rows_total") == 1
    assert moved("logflume_sink_write_seconds_count") == 1
    assert moved("logflume_sink_write_seconds_bucket", le="0.05") == 1
    assert moved("logflume_sink_write_seconds_bucket", le="0.025") == 0
    assert moved("logflume_sink_batch_values_sum") == 120


def test_role_ports() -> None:
    assert role_port(Settings(metrics_port=0), "sink") is None
    assert role_port(Settings(metrics_port=9400), "process") == 9410
    assert role_port(Settings(metrics_port=9400, metrics_instance=2), "sink") == 9422


def test_a_reducer_counts_the_values_its_record_held() -> None:
    """The "events in" of a stage: a record of three values (one invalid) counts three."""
    record = orjson.dumps([{"kind": "x"}, {"kind": "y"}, "not an object"])
    outcome = process_groups_record(record, Origin("t", 0, 0), {}.get)
    assert outcome.inputs == 3
    assert len(outcome.dead_letters) == 1  # the record as a whole: no value is a contribution
