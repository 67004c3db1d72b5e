"""The gateway's metrics: requests by route template and status, their times, what its
publishers handed to Kafka, the Maxim lines kept as dead letters and the fallbacks while
PostgreSQL is away; ``GET /metrics`` on the gateway's own port."""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kernel.metrics import GATEWAY_REGISTRY

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["instrument_gateway"]

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


_apps: weakref.WeakSet[Any] = weakref.WeakSet()


def _gateways() -> Iterator[Any]:
    """The :class:`~gateway.context.Gateway` of every started app of this process."""
    for app in list(_apps):
        gateway = getattr(app.state, "gateway", None)
        if gateway is not None:
            yield gateway


class PublisherCollector(Collector):
    """``logflume_gateway_events_{sent,spooled,resent}_total``: what the gateways of this
    process handed to Kafka (events out), read from their publishers' own counters; and
    what their spools lost: ``logflume_gateway_events_rejected_from_spool_total`` (spooled
    events Kafka refused for good, dropped) and ``logflume_gateway_spool_corrupt_total``
    (damaged spool regions skipped)."""

    _EVENTS = ("sent", "spooled", "resent", "rejected_from_spool")

    def collect(self) -> Iterator[Metric]:
        totals = dict.fromkeys((*self._EVENTS, "spool_corrupt"), 0)
        for gateway in _gateways():
            stats = gateway.ingest.publisher.stats
            for name in totals:
                totals[name] += int(getattr(stats, name, 0))
        for name in self._EVENTS:
            yield CounterMetricFamily(
                f"logflume_gateway_events_{name}",
                f"Events {name.replace('_', ' ')} by the gateway.",
                value=totals[name],
            )
        yield CounterMetricFamily(
            "logflume_gateway_spool_corrupt",
            "Damaged regions of the gateway's spool skipped (their events lost).",
            value=totals["spool_corrupt"],
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
