"""The gateway's errors and how they are answered.

Every refusal is a :class:`GatewayError` with an HTTP status. Validation failures carry the
wire contract's :class:`~producers.contract.FieldError` list and are answered in FastAPI's
own 422 shape (``{"detail": [{"loc", "msg", "type"}]}``, which the Humanloop SDK parses as
its ``HttpValidationError``), each entry also naming ``field`` and ``reason`` as the
contract does. Maxim's SDK reads ``{"error": {"message"}}``: its routes raise
:class:`MaximError`, and any refusal on its paths (``/api/sdk/``), FastAPI's own 422 for a
parameter and 404 / 405 included, is answered in that shape, the message naming each field
and reason (``query.id: is required``) and ``error.errors`` listing them as
``{"field", "reason"}``. Messages never quote a payload or a key.

A 503 always says ``Retry-After``. A failure to reach PostgreSQL that no fallback covered
(:mod:`gateway.outage`: the reads, a key never seen) is a 503 too, never a 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from producers.contract import ContractError, FieldError
from producers.contract.events import error_reason

from .outage import RETRY_AFTER_S, UNAVAILABLE

__all__ = [
    "BadRequest",
    "GatewayError",
    "JsonResponse",
    "MaximError",
    "NotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "detail_entries",
    "install_handlers",
]


class JsonResponse(Response):
    """JSON rendered by orjson (datetimes as RFC 3339)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class GatewayError(Exception):
    """A refusal answered with ``status`` and ``{"detail": ...}``."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"detail": self.message}


class BadRequest(GatewayError):
    status = 400


class Unauthorized(GatewayError):
    status = 401


class NotFound(GatewayError):
    status = 404


class PayloadTooLarge(GatewayError):
    status = 413


class Unavailable(GatewayError):
    """Nothing was accepted; retry later: neither Kafka nor the spool took the events, or
    PostgreSQL is away where nothing else can answer (answered with ``Retry-After``)."""

    status = 503


class ValidationFailed(GatewayError):
    """422 naming every field and reason. Fields are the contract's paths (``body.x``);
    ``where`` locates the event inside the request body (``[2]`` in an array)."""

    status = 422

    def __init__(self, errors: Sequence[FieldError], where: Sequence[str | int] = ()) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = tuple(errors)
        self.where = tuple(where)

    @classmethod
    def of(cls, exc: ContractError, where: Sequence[str | int] = ()) -> ValidationFailed:
        return cls(exc.errors, where)

    def body(self) -> dict[str, Any]:
        return {"detail": detail_entries(self.errors, self.where)}


class MaximError(GatewayError):
    """Answered as Maxim's SDK expects: ``{"error": {"message": ...}}``; for bad input the
    message is ``field: reason; ...`` and ``error.errors`` lists each ``{field, reason}``.

    The shape is what maxim-py parses from an error answer (maximhq/maxim-py,
    ``maxim/apis/maxim_apis.py``, read at commit 7dfa051 and in the installed 3.14.20): on
    an ``HTTPStatusError``, ``MaximAPI.__make_network_call_with_retry`` (and again
    ``push_logs``, the Logger's ``POST /api/sdk/v3/log``) checks that the JSON body is a
    dict whose ``"error"`` is a dict holding ``"message"`` and raises
    ``Exception(error_data["error"]["message"])``; any other body becomes ``HTTP Error
    <status>: ...`` with nothing of the body. It reads no other key, so ``errors`` is ours,
    for clients that want the fields apart."""

    def __init__(self, status: int, message: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.errors = tuple(errors)

    @classmethod
    def invalid(cls, status: int, errors: Sequence[FieldError]) -> MaximError:
        """Bad input: the message names every field and reason."""
        return cls(status, "; ".join(str(e) for e in errors), errors)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message}
        if self.errors:
            error["errors"] = [{"field": e.field, "reason": e.reason} for e in self.errors]
        return {"error": error}


def _loc(field: str) -> list[str | int]:
    """``body.messages[0].role`` -> ``["body", "messages", 0, "role"]``."""
    loc: list[str | int] = []
    for part in field.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
            loc.append(int(part[1:-1]))
        else:
            loc.append(part)
    return loc


def _request_loc(field: str, where: Sequence[str | int]) -> list[str | int]:
    """FastAPI's ``loc`` in the request: ``body``, the event's place, the field's path."""
    loc = _loc(field)
    if loc and loc[0] == "body":
        loc = loc[1:]
    return ["body", *where, *loc]


def detail_entries(
    errors: Iterable[FieldError], where: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    return [
        {
            "loc": _request_loc(e.field, where),
            "msg": e.reason,
            "type": "value_error.contract",
            "field": e.field,
            "reason": e.reason,
        }
        for e in errors
    ]


_MAXIM_PATHS = "/api/sdk/"


def _maxim_path(request: Request) -> bool:
    return request.url.path.startswith(_MAXIM_PATHS)


async def _gateway_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, GatewayError)
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "X-API-KEY"
    elif exc.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    body = exc.body()
    if _maxim_path(request) and not isinstance(exc, MaximError):
        errors = exc.errors if isinstance(exc, ValidationFailed) else ()
        body = MaximError(exc.status, exc.message, errors).body()
    return JsonResponse(body, status_code=exc.status, headers=headers or None)


async def _database_unavailable(request: Request, exc: Exception) -> JsonResponse:
    """PostgreSQL could not be reached where nothing else can answer: 503, retry later."""
    error = Unavailable(f"PostgreSQL is unavailable ({type(exc).__name__}); retry later")
    return await _gateway_error(request, error)


async def _invalid_parameters(request: Request, exc: Exception) -> JsonResponse:
    """FastAPI's own 422 (a path, query or header parameter), each entry also naming
    ``field`` (``path.id``, ``query.reference_id``) and ``reason`` in the contract's words;
    on the Maxim routes in Maxim's shape (:class:`MaximError`)."""
    assert isinstance(exc, RequestValidationError)
    detail, errors = [], []
    for error in exc.errors():
        reason = error_reason(error)
        field = ".".join(str(part) for part in error["loc"])
        errors.append(FieldError(field, reason))
        detail.append(
            {"loc": error["loc"], "msg": reason, "type": error["type"], "field": field,
             "reason": reason}
        )  # fmt: skip
    if _maxim_path(request):
        return JsonResponse(MaximError.invalid(422, errors).body(), status_code=422)
    return JsonResponse({"detail": detail}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (404 for no route, 405 for another method): FastAPI's
    answer, but in Maxim's shape on the Maxim routes (``Allow`` and other headers kept)."""
    assert isinstance(exc, HTTPException)
    if _maxim_path(request):  # the SDK's message says what was asked (never the query)
        message = f"{exc.detail} ({request.method} {request.url.path})"
        body = MaximError(exc.status_code, message).body()
        return JsonResponse(body, status_code=exc.status_code, headers=exc.headers)
    return await http_exception_handler(request, exc)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_parameters)
    app.add_exception_handler(HTTPException, _http_error)
