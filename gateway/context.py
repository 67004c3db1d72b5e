"""The gateway's parts, held by the app for the routes, and helpers every route shares:
reading a bounded request body, the id parameters, and the documented request schemas.

Routes read their bodies themselves (so that the size limit applies while reading and
every validation goes through the wire contract), and document them with
:func:`body_doc`, which :func:`openapi_schema` turns into the OpenAPI ``requestBody``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from pydantic import StringConstraints, TypeAdapter

from kernel.settings import GatewaySettings, Settings
from producers.contract import FieldError
from producers.contract.types import ID_PATTERN, MAX_ID_LENGTH

from .deadletters import DeadLetters
from .deferred import Deferred
from .errors import PayloadTooLarge, ValidationFailed
from .held import HeldLines
from .ingest import Ingest
from .log_index import LogIndex, MemoryLogIndex
from .nodes import NodeIndex
from .outage import DatabaseWatch
from .store import ReadStore

__all__ = [
    "CURSOR_MAX_LENGTH",
    "MAX_PAGE",
    "EnvironmentQuery",
    "Gateway",
    "GatewayDep",
    "IdList",
    "IdPath",
    "IdQuery",
    "PageNumber",
    "RequiredIdQuery",
    "TextQuery",
    "body_doc",
    "openapi_schema",
    "read_body",
    "read_json",
]


@dataclass(slots=True)
class Gateway:
    settings: Settings
    options: GatewaySettings
    ingest: Ingest
    store: ReadStore | None
    nodes: NodeIndex
    held: HeldLines
    dead_letters: DeadLetters
    # Work kept on disk while PostgreSQL is unreachable, and whether it is (gateway.outage).
    deferred: Deferred = field(default_factory=lambda: Deferred(None))
    watch: DatabaseWatch = field(default_factory=DatabaseWatch)
    logs: LogIndex = field(default_factory=MemoryLogIndex)  # Humanloop logs


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(_gateway)]
# Ids are the caller's own text (``producers.contract.types.EntityId``). In a path they come
# percent-encoded, ``/`` as ``%2F``; the server decodes the path before routing, so a route
# takes an id that may hold ``/`` with the ``path`` converter: ``/logs/{id:path}``.
# (The contract also bounds an id's UTF-8 bytes: an id over them is never stored, so a read
# by one finds nothing, and a write is refused by the contract.)
IdPath = Annotated[str, Path(pattern=ID_PATTERN, min_length=1, max_length=MAX_ID_LENGTH)]
RequiredIdQuery = Annotated[str, Query(pattern=ID_PATTERN, min_length=1, max_length=MAX_ID_LENGTH)]
IdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, min_length=1, max_length=MAX_ID_LENGTH)]
# Humanloop's environment name (``production``, ``staging``...).
EnvironmentQuery = Annotated[str | None, Query(pattern=ID_PATTERN, max_length=1024)]
# Free text a query compares with stored text: PostgreSQL's text cannot hold NUL, so a NUL is
# refused here (422 naming the parameter) rather than by the database (a 500).
TextQuery = Annotated[str | None, Query(pattern=ID_PATTERN, max_length=1024)]
# Repeated ids (``?id=a&id=b``), each without NUL.
IdList = list[
    Annotated[str, StringConstraints(pattern=ID_PATTERN, min_length=1, max_length=MAX_ID_LENGTH)]
]
# Numbered pages (Humanloop's ``page``): OFFSET is (page - 1) * size, a bigint in
# PostgreSQL; past this bound a listing is walked with the keyset cursor instead.
MAX_PAGE = 1_000_000
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page number, from 1.")]
# A cursor is the last row's time and id as JSON, base64-encoded: an id of 1,024 control
# characters is 6 KiB of JSON escapes, 8 KiB of base64.
CURSOR_MAX_LENGTH = 16_384


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed([FieldError("body", f"is not valid JSON ({exc})")], ()) from None


# name -> (JSON schema generator of the documented body, content type)
_BODIES: dict[str, tuple[TypeAdapter[Any] | None, str]] = {}


def body_doc(name: str, shape: Any, content_type: str = "application/json") -> dict[str, Any]:
    """``openapi_extra`` documenting a body the route reads itself (``shape``: a type)."""
    _BODIES[name] = (TypeAdapter(shape) if shape is not str else None, content_type)
    schema: dict[str, Any] = (
        {"type": "string"} if shape is str else {"$ref": f"#/components/schemas/{name}"}
    )
    return {"requestBody": {"required": True, "content": {content_type: {"schema": schema}}}}


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the documented bodies (their definitions as components)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, (adapter, _) in _BODIES.items():
        if adapter is None:
            continue
        body = adapter.json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in body.pop("$defs", {}).items():
            components.setdefault(def_name, definition)
        components[name] = body
    app.openapi_schema = schema
    return schema
