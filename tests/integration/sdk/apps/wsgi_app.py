"""A WSGI app (gunicorn sync workers): ``GET /?ref=...`` logs one event (no ``ref``: nothing)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from .common import log_request


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    ref = parse_qs(environ.get("QUERY_STRING", "")).get("ref", [""])[0]
    log_id = log_request(ref) if ref else ""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [log_id.encode()]
