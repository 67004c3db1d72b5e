"""Dead letters without the payload of a ``save=false`` log.

A dead letter keeps what it needs to be understood (its reason and its origin: topic,
partition, offset, index) and the event's bytes. For an event that says ``save=false``,
or that belongs to a log whose merged state is ``save=false`` (an update, which never
repeats the flag), those bytes lose their payload fields
(``producers.contract.PAYLOAD_FIELDS``), so neither the dead-letter topic nor the
``dead_letters`` table holds what the caller asked to be stored nowhere. A record that is
not JSON at all cannot be read for a flag and is kept as it came.
"""

from __future__ import annotations

from typing import Any

import orjson

from producers.contract import LOG_TYPES, event_without_payload, says_unsaved

from .entities import entity_key
from .outcome import Lookup

__all__ = ["private_event", "private_record", "unsaved_event"]


def unsaved_event(item: Any, lookup: Lookup) -> bool:
    """The decoded event says ``save=false``, or names a log whose state says so."""
    if not isinstance(item, dict):
        return False
    body = item.get("body")
    if not isinstance(body, dict):
        return False
    if says_unsaved(body):
        return True
    project = item.get("project")
    if item.get("type") not in LOG_TYPES or not isinstance(project, str):
        return False
    for identity in (body.get("reference_id"), body.get("id")):
        if isinstance(identity, str):
            state = lookup(entity_key("log", project, identity))
            if state is not None and state.get("save") is False:
                return True
    return False


def private_event(item: Any, lookup: Lookup) -> Any:
    """The decoded event as a dead letter may keep it."""
    return event_without_payload(item) if unsaved_event(item, lookup) else item


def private_record(raw: bytes, lookup: Lookup) -> bytes:
    """A raw-topic record's bytes as a dead letter may keep them: the events of unsaved
    logs without their payload fields (empty when those events cannot be written back)."""
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    items = decoded if isinstance(decoded, list) else [decoded]
    if not any(unsaved_event(item, lookup) for item in items):
        return raw
    kept = [private_event(item, lookup) for item in items]
    try:
        return orjson.dumps(kept if isinstance(decoded, list) else kept[0])
    except orjson.JSONEncodeError:
        return b""
