"""The sink's metrics: batches, records and values in, rows out per table, refused rows,
batch sizes and write times, and its group's consumer lag (served by
:mod:`kernel.metrics`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

from kernel.metrics import SINK_LAG, SINK_REGISTRY, role_port, serve, watch_lag
from kernel.settings import Settings

if TYPE_CHECKING:
    from sinks.consumer import BatchReport

__all__ = ["instrument_sink", "observe_sink_batch"]

SINK_BATCHES = Counter(
    "logflume_sink_batches_total", "Batches written to PostgreSQL.", registry=SINK_REGISTRY
)
SINK_RECORDS_IN = Counter(
    "logflume_sink_records_total", "Kafka records consumed (in).", registry=SINK_REGISTRY
)
SINK_VALUES_IN = Counter(
    "logflume_sink_values_total", "Stage outputs consumed (events in).", registry=SINK_REGISTRY
)
SINK_ROWS_OUT = Counter(
    "logflume_sink_rows_total",
    "Rows upserted per table (events out).",
    ["table"],
    registry=SINK_REGISTRY,
)
SINK_REFUSED = Counter(
    "logflume_sink_refused_rows_total",
    "Rows PostgreSQL refused (stored as dead letters).",
    registry=SINK_REGISTRY,
)
SINK_BATCH_VALUES = Histogram(
    "logflume_sink_batch_values",
    "Stage outputs per written batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000),
    registry=SINK_REGISTRY,
)
SINK_WRITE_SECONDS = Histogram(
    "logflume_sink_write_seconds",
    "Time to write one batch in one transaction (sink latency).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=SINK_REGISTRY,
)


def observe_sink_batch(report: BatchReport) -> None:
    """``Sink(on_batch=...)``: count one written batch."""
    SINK_BATCHES.inc()
    SINK_RECORDS_IN.inc(report.records)
    SINK_VALUES_IN.inc(report.values)
    for table, rows in report.rows.items():
        SINK_ROWS_OUT.labels(table).inc(rows)
    if report.refused:
        SINK_REFUSED.inc(report.refused)
    SINK_BATCH_VALUES.observe(report.values)
    SINK_WRITE_SECONDS.observe(report.write_seconds)


def instrument_sink(settings: Settings) -> Callable[[BatchReport], None] | None:
    """Serve the sink's metrics (when on) and watch its group's lag; the batch observer."""
    if role_port(settings, "sink") is None:
        return None
    watch_lag(settings, settings.sink_group, SINK_LAG)
    serve(settings, "sink", SINK_REGISTRY)
    return observe_sink_batch
