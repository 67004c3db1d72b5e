"""Prometheus metrics of every stage (``prometheus_client``, the process's default registry).

Where they are served:

- the gateway: ``GET /metrics`` on its own HTTP port;
- a processor worker and a sink: their own HTTP port, ``LOGFLUME_METRICS_PORT`` (the base,
  0 = off) plus a role offset (:data:`ROLE_OFFSETS`: processors +10, sinks +20) plus
  ``LOGFLUME_METRICS_INSTANCE`` (0-9, set by ``logflume run`` for its 2nd, 3rd... worker).
  A worker's port also answers ``/healthz`` (liveness) and ``/readyz`` (assigned and
  recovered) from its watchdog (:mod:`processors.watchdog`), in the server's own thread, so
  they answer even while the worker's event loop is blocked.

The processors' counters are read at scrape time from each stage's own
:class:`~processors.agents.StageStats` (a custom collector), so the agents' hot loop pays
nothing for them. Consumer lag comes from the broker (:mod:`logflume.lag`) in a thread.
Metric names are listed in the README ("Metrics").
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, make_server

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from logflume.lag import LagMonitor, pipeline_groups
from logflume.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from processors.agents import Stage
    from processors.watchdog import Watchdog
    from sinks.consumer import BatchReport

__all__ = [
    "GATEWAY_REGISTRY",
    "PROCESSOR_REGISTRY",
    "ROLE_OFFSETS",
    "SINK_REGISTRY",
    "instrument_gateway",
    "instrument_processor",
    "instrument_sink",
    "role_port",
]

log = logging.getLogger(__name__)

Role = Literal["process", "sink"]
ROLE_OFFSETS: dict[Role, int] = {"process": 10, "sink": 20}

disable_created_metrics()  # no `_created` series beside every counter


def _registry() -> CollectorRegistry:
    """One registry per role, so that a process exposes its own stage's metrics only
    (plus its CPU and memory)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


PROCESSOR_REGISTRY = _registry()
SINK_REGISTRY = _registry()
GATEWAY_REGISTRY = _registry()


def _lag_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "logflume_consumer_lag",
        "Records of a topic not yet committed by a consumer group (log end - committed offset).",
        ["group", "topic"],
        registry=registry,
    )


PROCESSOR_LAG = _lag_gauge(PROCESSOR_REGISTRY)
SINK_LAG = _lag_gauge(SINK_REGISTRY)

# -- sink ---------------------------------------------------------------------------------
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

# -- gateway ------------------------------------------------------------------------------
GATEWAY_REQUESTS = Counter(
    "logflume_gateway_requests_total",
    "HTTP requests answered.",
    ["method", "route", "status"],
    registry=GATEWAY_REGISTRY,
)
GATEWAY_SECONDS = Histogram(
    "logflume_gateway_request_seconds",
    "Time to answer a request.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=GATEWAY_REGISTRY,
)


def role_port(settings: Settings, role: Role) -> int | None:
    """The metrics port of a processor worker or a sink, None when metrics are off."""
    if settings.metrics_port == 0:
        return None
    return settings.metrics_port + ROLE_OFFSETS[role] + settings.metrics_instance


def _serve(settings: Settings, role: Role, registry: CollectorRegistry) -> int | None:
    port = role_port(settings, role)
    if port is None:
        return None
    start_http_server(port, addr=settings.metrics_host, registry=registry)
    log.info(
        "%s metrics on http://%s:%d/metrics",
        role,
        settings.metrics_host,
        port,
        extra={"role": role, "port": port},
    )
    return port


def _watch_lag(settings: Settings, group: str, gauge: Gauge) -> None:
    groups = [g for g in pipeline_groups(settings) if g.group == group]
    LagMonitor(settings, groups, lambda g, topic, lag: gauge.labels(g, topic).set(lag)).start()


# -- processors ---------------------------------------------------------------------------


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


def instrument_processor(
    settings: Settings, stages: Mapping[str, Stage], watchdog: Watchdog | None = None
) -> int | None:
    """Serve the worker's metrics (when on), with ``/healthz`` and ``/readyz`` from its
    watchdog, and watch its group's lag; the port or None."""
    port = role_port(settings, "process")
    if port is None:
        return None
    PROCESSOR_REGISTRY.register(StageCollector(stages))
    from processors.app import app_id

    _watch_lag(settings, app_id(settings), PROCESSOR_LAG)
    if watchdog is None:
        return _serve(settings, "process", PROCESSOR_REGISTRY)
    PROCESSOR_REGISTRY.register(LivenessCollector(watchdog))
    probes = {"/healthz": watchdog.liveness, "/readyz": watchdog.readiness}
    _serve_wsgi(settings.metrics_host, port, _with_probes(PROCESSOR_REGISTRY, probes))
    log.info(
        "process metrics on http://%s:%d/metrics, probes on /healthz and /readyz",
        settings.metrics_host,
        port,
        extra={"role": "process", "port": port},
    )
    return port


Probe = Callable[[], tuple[bool, dict[str, Any]]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]


def _with_probes(registry: CollectorRegistry, probes: Mapping[str, Probe]) -> WSGIApp:
    """The registry's metrics app, plus ``probes``: path -> (ok, JSON body), answered 200
    when ok, else 503."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        ok, body = probe()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [orjson.dumps(body)]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


def _serve_wsgi(host: str, port: int, app: WSGIApp) -> None:
    """Serve ``app`` from a daemon thread (a thread per request), as prometheus_client's
    own ``start_http_server`` does for its metrics app alone."""

    class Server(ThreadingWSGIServer):
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    httpd = make_server(host, port, app, Server, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="logflume-metrics", daemon=True).start()


# -- sink ---------------------------------------------------------------------------------


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
    _watch_lag(settings, settings.sink_group, SINK_LAG)
    _serve(settings, "sink", SINK_REGISTRY)
    return observe_sink_batch


# -- gateway ------------------------------------------------------------------------------

_apps: weakref.WeakSet[Any] = weakref.WeakSet()


def _gateways() -> Iterator[Any]:
    """The :class:`~gateway.context.Gateway` of every started app of this process."""
    for app in list(_apps):
        gateway = getattr(app.state, "gateway", None)
        if gateway is not None:
            yield gateway


class PublisherCollector(Collector):
    """``logflume_gateway_events_{sent,spooled,resent}_total``: what the gateways of this
    process handed to Kafka (events out), read from their publishers' own counters."""

    def collect(self) -> Iterator[Metric]:
        totals = {"sent": 0, "spooled": 0, "resent": 0}
        for gateway in _gateways():
            stats = gateway.ingest.publisher.stats
            for name in totals:
                totals[name] += int(getattr(stats, name, 0))
        for name, value in totals.items():
            yield CounterMetricFamily(
                f"logflume_gateway_events_{name}", f"Events {name} by the gateway.", value=value
            )


GATEWAY_REGISTRY.register(PublisherCollector())


class MaximDeadLetterCollector(Collector):
    """``logflume_gateway_maxim_dead_letters_total{entity,action,kind}``: Maxim lines the
    gateways of this process kept as dead letters (``kind`` ``not_modelled`` or ``refused``),
    read from their :class:`~gateway.deadletters.DeadLetters` counts. The labels are bounded
    to what maxim-py sends (else ``other``)."""

    def collect(self) -> Iterator[Metric]:
        totals: dict[tuple[str, ...], int] = {}
        for gateway in _gateways():
            for labels, count in gateway.dead_letters.counts.items():
                totals[labels] = totals.get(labels, 0) + count
        family = CounterMetricFamily(
            "logflume_gateway_maxim_dead_letters",
            "Maxim commit lines kept as dead letters (not modelled, or refused).",
            labels=["entity", "action", "kind"],
        )
        for labels, count in sorted(totals.items()):
            family.add_metric(list(labels), count)
        yield family


GATEWAY_REGISTRY.register(MaximDeadLetterCollector())


class DatabaseFallbackCollector(Collector):
    """``logflume_gateway_db_fallbacks_total{what}``: calls of the gateways of this process
    that could not reach PostgreSQL and answered from a cache or deferred the work to the
    local spool (``what``: ``api_key``, ``version``, ``maxim_hold``, ...; see
    :mod:`gateway.outage`), and ``logflume_gateway_db_unreachable`` (1 while it is away)."""

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, int] = {}
        down = 0
        for gateway in _gateways():
            for what, count in gateway.watch.fallbacks.items():
                totals[what] = totals.get(what, 0) + count
            down = max(down, int(gateway.watch.down))
        family = CounterMetricFamily(
            "logflume_gateway_db_fallbacks",
            "Gateway calls that could not reach PostgreSQL and fell back (cache or spool).",
            labels=["what"],
        )
        for what, count in sorted(totals.items()):
            family.add_metric([what], count)
        yield family
        yield GaugeMetricFamily(
            "logflume_gateway_db_unreachable",
            "1 while the gateway finds PostgreSQL unreachable.",
            value=down,
        )


GATEWAY_REGISTRY.register(DatabaseFallbackCollector())

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class _RequestMetrics:
    """Pure ASGI middleware: counts and times requests by route template (``/traces/{id}``,
    never the id itself, which would make one time series per trace)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The template without converters: ``/traces/{id}`` for ``/traces/{id:path}``.
            route = getattr(scope.get("route"), "path_format", None) or "unmatched"
            method = scope.get("method", "")
            GATEWAY_REQUESTS.labels(method, route, str(status)).inc()
            GATEWAY_SECONDS.labels(method, route).observe(time.perf_counter() - started)


def instrument_gateway(app: FastAPI) -> None:
    """Add the request metrics and ``GET /metrics`` (no API key: scrape it on a trusted
    network, as the gateway binds to loopback by default)."""
    from fastapi import Response

    _apps.add(app)
    app.add_middleware(_RequestMetrics)  # type: ignore[arg-type]

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(GATEWAY_REGISTRY), media_type=CONTENT_TYPE_LATEST)
