"""``save=false`` at every place an event is handled: which events say it, which log an
event addresses, and an event without its payload fields.

Humanloop documents ``save`` as "Whether the request/response payloads will be stored".
The payload fields are :data:`~producers.contract.outputs.PAYLOAD_FIELDS`, the one list
stage 1 keeps out of its state and outputs; every edge (the SDK, the gateway, stage 1's
dead letters, ``logflume export``) removes the same fields with :func:`without_payload`.

A ``save=false`` create names its log by id and, when given, by reference id; an update
or a later create of that log says nothing about ``save`` but addresses it by one of the
two. :func:`log_handles` turns both into the strings an index of unsaved logs keys on
(``id:<log id>``, ``ref:<reference id>``), so an edge that remembers the handles of the
unsaved creates recognises their updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .outputs import PAYLOAD_FIELDS

__all__ = [
    "LOG_TYPES",
    "carries_payload",
    "event_without_payload",
    "log_handles",
    "says_unsaved",
    "without_payload",
]

LOG_TYPES = frozenset({"log", "log_update"})  # the events of a log entity


def says_unsaved(body: Mapping[str, Any]) -> bool:
    """The body asks that its log's payloads be stored nowhere."""
    return body.get("save") is False


def carries_payload(body: Mapping[str, Any]) -> bool:
    return not PAYLOAD_FIELDS.isdisjoint(body)


def without_payload(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` without its payload fields (every other field kept)."""
    return {name: value for name, value in body.items() if name not in PAYLOAD_FIELDS}


def event_without_payload(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an envelope (``{event_id, type, ts, project, body}``) whose body has no
    payload fields; an envelope without an object body is copied as it is."""
    body = item.get("body")
    if not isinstance(body, Mapping):
        return dict(item)
    return {**item, "body": without_payload(body)}


def log_handles(body: Mapping[str, Any]) -> list[str]:
    """The handles of the log a ``log`` or ``log_update`` body names: ``id:<id>`` and
    ``ref:<reference_id>``, for each that is given as a string."""
    handles = []
    log_id, reference_id = body.get("id"), body.get("reference_id")
    if isinstance(log_id, str):
        handles.append(f"id:{log_id}")
    if isinstance(reference_id, str):
        handles.append(f"ref:{reference_id}")
    return handles
