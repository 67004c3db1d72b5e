"""The gateway's errors and how they are answered.

Every refusal is a :class:`GatewayError` with an HTTP status. Validation failures carry the
wire contract's :class:`~producers.contract.FieldError` list and are answered in FastAPI's
own 422 shape (``{"detail": [{"loc", "msg", "type"}]}``, which the Humanloop SDK parses as
its ``HttpValidationError``), each entry also naming ``field`` and ``reason`` as the
contract does. Maxim's SDK reads ``{"error": {"message"}}``: its routes raise
:class:`MaximError`, and any refusal on its paths is answered in that shape. Messages never
quote a payload or a key.

A 503 always says ``Retry-After``. A failure to reach PostgreSQL that no fallback covered
(:mod:`gateway.outage`: the reads, a key never seen) is a 503 too, never a 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

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
    """Answered as Maxim's SDK expects: ``{"error": {"message": ...}}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message}}


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


async def _gateway_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, GatewayError)
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "X-API-KEY"
    elif exc.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    body = exc.body()
    if request.url.path.startswith(_MAXIM_PATHS) and not isinstance(exc, MaximError):
        body = MaximError(exc.status, exc.message).body()
    return JsonResponse(body, status_code=exc.status, headers=headers or None)


async def _database_unavailable(request: Request, exc: Exception) -> JsonResponse:
    """PostgreSQL could not be reached where nothing else can answer: 503, retry later."""
    error = Unavailable(f"PostgreSQL is unavailable ({type(exc).__name__}); retry later")
    return await _gateway_error(request, error)


async def _invalid_parameters(_: Request, exc: Exception) -> JsonResponse:
    """FastAPI's own 422 (a path, query or header parameter), each entry also naming
    ``field`` (``path.id``, ``query.reference_id``) and ``reason`` in the contract's words."""
    assert isinstance(exc, RequestValidationError)
    detail = []
    for error in exc.errors():
        reason = error_reason(error)
        field = ".".join(str(part) for part in error["loc"])
        detail.append(
            {"loc": error["loc"], "msg": reason, "type": error["type"], "field": field,
             "reason": reason}
        )  # fmt: skip
    return JsonResponse({"detail": detail}, status_code=422)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_parameters)
