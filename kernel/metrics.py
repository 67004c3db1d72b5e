"""Prometheus metrics: what every role shares (``prometheus_client``).

Where they are served:

- the gateway: ``GET /metrics`` on its own HTTP port (:mod:`gateway.metrics`);
- a processor worker and a sink: their own HTTP port, ``LOGFLUME_METRICS_PORT`` (the base,
  0 = off) plus a role offset (:data:`ROLE_OFFSETS`: processors +10, sinks +20) plus
  ``LOGFLUME_METRICS_INSTANCE`` (0-9, set by ``logflume run`` for its 2nd, 3rd... worker).
  A worker's port also answers ``/healthz`` (liveness) and ``/readyz`` (assigned and
  recovered) from its watchdog (:mod:`processors.watchdog`), in the server's own thread, so
  they answer even while the worker's event loop is blocked.

Each role defines its metrics in its own package (:mod:`processors.metrics`,
:mod:`sinks.metrics`, :mod:`gateway.metrics`) on a registry made here; this module holds
the registries, the ports, the servers and the consumer-lag gauges (read from the broker by
:mod:`kernel.lag` in a thread). Metric names are listed in the README ("Metrics").
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, make_server

import orjson
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.exposition import ThreadingWSGIServer

from kernel.lag import LagMonitor, pipeline_groups
from kernel.settings import Settings

__all__ = [
    "GATEWAY_REGISTRY",
    "PROCESSOR_LAG",
    "PROCESSOR_REGISTRY",
    "ROLE_OFFSETS",
    "SINK_LAG",
    "SINK_REGISTRY",
    "Probe",
    "role_port",
    "serve",
    "serve_wsgi",
    "watch_lag",
    "with_probes",
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


def role_port(settings: Settings, role: Role) -> int | None:
    """The metrics port of a processor worker or a sink, None when metrics are off."""
    if settings.metrics_port == 0:
        return None
    return settings.metrics_port + ROLE_OFFSETS[role] + settings.metrics_instance


def serve(settings: Settings, role: Role, registry: CollectorRegistry) -> int | None:
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


def watch_lag(settings: Settings, group: str, gauge: Gauge) -> None:
    groups = [g for g in pipeline_groups(settings) if g.group == group]
    LagMonitor(settings, groups, lambda g, topic, lag: gauge.labels(g, topic).set(lag)).start()


Probe = Callable[[], tuple[bool, dict[str, Any]]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]


def with_probes(registry: CollectorRegistry, probes: Mapping[str, Probe]) -> WSGIApp:
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


def serve_wsgi(host: str, port: int, app: WSGIApp) -> None:
    """Serve ``app`` from a daemon thread (a thread per request), as prometheus_client's
    own ``start_http_server`` does for its metrics app alone."""

    class Server(ThreadingWSGIServer):
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    httpd = make_server(host, port, app, Server, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="logflume-metrics", daemon=True).start()
