"""The processor worker's metrics: each stage's counters, read at scrape time from its own
:class:`~processors.agents.StageStats` (a custom collector, so the agents' hot loop pays
nothing for them), the state gauges, the watchdog's liveness figures, and ``/healthz`` /
``/readyz`` on the metrics port (:mod:`kernel.metrics` serves them)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kernel.metrics import (
    PROCESSOR_LAG,
    PROCESSOR_REGISTRY,
    role_port,
    serve,
    serve_wsgi,
    watch_lag,
    with_probes,
)
from kernel.runtime import HEAP, Heap
from kernel.settings import Settings

if TYPE_CHECKING:
    from processors.agents import Stage
    from processors.watchdog import Watchdog

__all__ = ["HeapCollector", "LivenessCollector", "StageCollector", "instrument_processor"]

log = logging.getLogger(__name__)


class StageCollector(Collector):
    """``logflume_stage_<counter>_total{stage=...}`` from each stage's StageStats, the
    gauges ``logflume_stage_state_entries`` and ``logflume_stage_cold_entries`` and the
    counter ``logflume_stage_states_moved_to_disk_total``, all per ``stage``."""

    def __init__(self, stages: Mapping[str, Stage]) -> None:
        self._stages = dict(stages)

    def collect(self) -> Iterator[Metric]:
        if not self._stages:
            return
        sample = next(iter(self._stages.values())).stats
        for f in fields(sample):
            family = CounterMetricFamily(
                f"logflume_stage_{f.name}", _STAGE_HELP.get(f.name, f.name), labels=["stage"]
            )
            for name, stage in self._stages.items():
                family.add_metric([name], float(getattr(stage.stats, f.name)))
            yield family
        entries = GaugeMetricFamily(
            "logflume_stage_state_entries",
            "Values in the stage's state table on this worker (states, detached members).",
            labels=["stage"],
        )
        cold = GaugeMetricFamily(
            "logflume_stage_cold_entries",
            "States on the worker's disk (quiet for LOGFLUME_PROCESSOR_STATE_QUIET_S).",
            labels=["stage"],
        )
        moved = CounterMetricFamily(
            "logflume_stage_states_moved_to_disk",
            "States moved from memory to the cold tier by the sweep.",
            labels=["stage"],
        )
        for name, stage in self._stages.items():
            table = stage.table
            entries.add_metric([name], float(len(table.data)))
            cold.add_metric([name], float(table.cold.rows() if table.cold else 0))
            moved.add_metric([name], float(table.demoted_total))
        yield entries
        yield cold
        yield moved


_STAGE_HELP = {
    "records": "Input records processed (in).",
    "inputs": "Values those records held: events, entities, contributions (in).",
    "poison_records": "Input records a reducer could not handle (one dead letter each).",
    "dead_letters": "Dead letters sent (invalid events, poison records).",
    "writes": "State table writes (coalesced: one per entity touched by a record).",
    "outputs": "Values emitted downstream (out).",
    "output_records": "Kafka records those values were packed into (out batches).",
    "duplicates": "Events dropped as exact duplicates (same event_id).",
    "unpriced": "Values whose model the price table does not know.",
    "flushes": "Output windows flushed (state writes and outputs sent, records acknowledged).",
    "reduce_cpu_seconds": "CPU seconds in the stage's reducer (stage code; not Faust, not sends).",
}


class LivenessCollector(Collector):
    """From the worker's watchdog, per ``stage``: ``logflume_stage_stalled`` (1 when one of
    its partitions has work but has not moved for the stall bound, or the loop is blocked;
    the worker then exits), ``logflume_stage_seconds_without_progress`` (the longest a
    partition with work has not moved; 0 when every one moves or is idle), and
    ``logflume_stage_partition_lag{stage,partition}`` for the partitions this worker holds."""

    def __init__(self, watchdog: Watchdog) -> None:
        self._watchdog = watchdog

    def collect(self) -> Iterator[Metric]:
        stalled = GaugeMetricFamily(
            "logflume_stage_stalled",
            "1 when the stage has a partition with lag that did not move for the stall bound.",
            labels=["stage"],
        )
        still = GaugeMetricFamily(
            "logflume_stage_seconds_without_progress",
            "Longest time one of the stage's partitions with lag has not moved.",
            labels=["stage"],
        )
        lag = GaugeMetricFamily(
            "logflume_stage_partition_lag",
            "Records of an assigned source partition not yet committed (log end - committed).",
            labels=["stage", "partition"],
        )
        for stage, (is_stalled, seconds, lags) in self._watchdog.stage_report().items():
            stalled.add_metric([stage], 1.0 if is_stalled else 0.0)
            still.add_metric([stage], seconds)
            for partition, value in sorted(lags.items()):
                lag.add_metric([stage, str(partition)], float(value))
        yield stalled
        yield still
        yield lag


class HeapCollector(Collector):
    """The worker's full garbage collections (:class:`kernel.runtime.Heap`):
    ``logflume_gc_full_passes_total``, ``logflume_gc_full_seconds_total`` (their pauses) and
    ``logflume_gc_collected_total`` (unreachable objects they freed: cyclic garbage a
    freeze took along, alive or already dead; steady growth here is memory the interval
    holds)."""

    def __init__(self, heap: Heap = HEAP) -> None:
        self._heap = heap

    def collect(self) -> Iterator[Metric]:
        heap = self._heap
        yield CounterMetricFamily(
            "logflume_gc_full_passes", "Full garbage collections.", value=heap.full_passes
        )
        yield CounterMetricFamily(
            "logflume_gc_full_seconds",
            "Time spent in full garbage collections.",
            value=heap.full_seconds_total,
        )
        yield CounterMetricFamily(
            "logflume_gc_collected",
            "Unreachable objects freed by the full garbage collections.",
            value=heap.collected_total,
        )


def instrument_processor(
    settings: Settings, stages: Mapping[str, Stage], watchdog: Watchdog | None = None
) -> int | None:
    """Serve the worker's metrics (when on), with ``/healthz`` and ``/readyz`` from its
    watchdog, and watch its group's lag; the port or None."""
    port = role_port(settings, "process")
    if port is None:
        return None
    PROCESSOR_REGISTRY.register(StageCollector(stages))
    PROCESSOR_REGISTRY.register(HeapCollector())
    watch_lag(settings, settings.processors_group, PROCESSOR_LAG)
    if watchdog is None:
        return serve(settings, "process", PROCESSOR_REGISTRY)
    PROCESSOR_REGISTRY.register(LivenessCollector(watchdog))
    probes = {"/healthz": watchdog.liveness, "/readyz": watchdog.readiness}
    serve_wsgi(settings.metrics_host, port, with_probes(PROCESSOR_REGISTRY, probes))
    log.info(
        "process metrics on http://%s:%d/metrics, probes on /healthz and /readyz",
        settings.metrics_host,
        port,
        extra={"role": "process", "port": port},
    )
    return port
