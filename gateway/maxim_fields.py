"""How the keys of a Maxim commit line's data become the fields of a contract body (pure).

Per kind, a map of line keys to body fields; a key that no body field takes joins the
body's metadata (:func:`line_fields`), so nothing a line says is dropped, except the keys
that name the node or its parent (said by the event's ids) and an attachment's bytes,
which never travel.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

__all__ = [
    "GENERATION_FIELDS",
    "GENERATION_UPDATE",
    "SPAN_FIELDS",
    "TRACE_FIELDS",
    "completed",
    "failure_of",
    "line_fields",
    "node_fields",
]

# Line keys -> body fields, per kind.
_NODE_FIELDS = {"name": "name", "tags": "tags", "metadata": "metadata", "metrics": "metrics",
                "startTimestamp": "start_time", "endTimestamp": "end_time"}  # fmt: skip
TRACE_FIELDS = {**_NODE_FIELDS, "sessionId": "session_id", "input": "input", "output": "output"}
SPAN_FIELDS = {**_NODE_FIELDS, "input": "input"}
GENERATION_FIELDS = {**_NODE_FIELDS, "model": "model", "provider": "provider",
                     "messages": "messages", "modelParameters": "model_parameters"}  # fmt: skip
GENERATION_UPDATE = {**GENERATION_FIELDS, "messages": "add_messages", "cost": "cost"}
_TOOL_CALL_FIELDS = {**_NODE_FIELDS, "description": "description", "args": "args",
                     "result": "result", "error": "error"}  # fmt: skip
_RETRIEVAL_FIELDS = {**_NODE_FIELDS, "input": "query", "docs": "documents"}
_EVENT_FIELDS = {**_NODE_FIELDS, "timestamp": "start_time"}
_ERROR_FIELDS = {**_NODE_FIELDS}
_ATTACHMENT_KEYS = ("type", "name", "url", "key", "mime_type", "mimeType", "size")
_KIND_FIELDS = {"tool_call": _TOOL_CALL_FIELDS, "retrieval": _RETRIEVAL_FIELDS,
                "event": _EVENT_FIELDS, "error": _ERROR_FIELDS, "attachment": _NODE_FIELDS,
                "session": _NODE_FIELDS}  # fmt: skip
# Keys that name the node or its parent (said by the event's ids), or that must never
# travel (an attachment's bytes).
_IMPLIED = frozenset({"id", "spanId", "data"})


def _metrics(value: Any) -> Any:
    """``add_metric``'s ``{"name": n, "value": v}`` (tool calls, retrievals) as ``{n: v}``,
    like the other entities send it."""
    if isinstance(value, dict) and value.keys() == {"name", "value"}:
        return {str(value["name"]): value["value"]}
    return value


def line_fields(data: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The body fields of ``data``; its other keys join the body's metadata."""
    body = {wire: data[name] for name, wire in names.items() if data.get(name) is not None}
    if "metrics" in body:
        body["metrics"] = _metrics(body["metrics"])
    extra = {k: v for k, v in data.items()
             if k not in names and k not in _IMPLIED and v is not None}  # fmt: skip
    if extra:
        metadata = body.get("metadata")
        body["metadata"] = {**extra, **metadata} if isinstance(metadata, dict) else extra
    return body


def completed(result: dict[str, Any], generation_id: str, received: datetime) -> dict[str, Any]:
    """Maxim passes results through its provider parsers; id and created may be missing."""
    completion = dict(result)
    completion.setdefault("id", generation_id)
    if not isinstance(completion.get("created"), int):
        completion["created"] = int(received.timestamp())
    return completion


def failure_of(error: Any, type_key: str = "type") -> dict[str, Any]:
    """Maxim's ``{message, code, type}`` (an error node says ``errorType``)."""
    fields = error if isinstance(error, dict) else {}
    failure = {"message": str(fields.get("message") or error)}
    for name, key in (("code", "code"), ("type", type_key)):
        if fields.get(key) not in (None, ""):
            failure[name] = str(fields[key])
    return failure


def node_fields(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A node's kind-specific fields from a line's data (the rest as :func:`line_fields`)."""
    if kind == "error":
        error = {k: data[k] for k in ("message", "code", "errorType") if k in data}
        rest = {k: v for k, v in data.items() if k not in error}
        return {**line_fields(rest, _ERROR_FIELDS), "error": failure_of(error, "errorType")}
    if kind == "attachment":
        info = {k: data[k] for k in _ATTACHMENT_KEYS if data.get(k) is not None}
        if "mimeType" in info:
            info["mime_type"] = info.pop("mimeType")
        rest = {k: v for k, v in data.items() if k not in _ATTACHMENT_KEYS or k == "name"}
        return {**line_fields(rest, _NODE_FIELDS), "attachment": info}
    body = line_fields(data, _KIND_FIELDS[kind])
    if kind == "event" and "start_time" in body:
        body.setdefault("end_time", body["start_time"])  # an event is an instant
    if "error" in body:
        body["error"] = failure_of(body["error"])
    if "result" in body and not isinstance(body["result"], str):
        body["result"] = orjson.dumps(body["result"]).decode()
    docs = body.get("documents")
    if docs is not None:
        docs = docs if isinstance(docs, list) else [docs]
        body["documents"] = [d if isinstance(d, str) else orjson.dumps(d).decode() for d in docs]
    return body
