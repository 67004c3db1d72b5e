"""What an export keeps of the raw topic: no payload field of a ``save=false`` log, and no
event of a deleted entity, whatever the topic holds.

The raw topic may hold payloads of unsaved logs (events written by producers that are not
logflume's, updates that reached a gateway or SDK before the save=false create they belong
to) and the events of entities deleted since. An export therefore reads its window twice:
first to learn which logs are unsaved (the handles, ``id:…`` and ``ref:…``, of every
``log`` event that says ``save=false``) and which entities are deleted (``delete``
events), then to write the events: those of unsaved logs without their payload fields,
none of a deleted entity's (the ``delete`` events themselves are kept, so that an import
into a deployment that still stores the entity erases it there too). Stage 1 never stores
unsaved payloads, so the archive replays to the same tables as far as they go.
"""

from __future__ import annotations

from typing import Any

from producers.contract import LOG_TYPES, event_without_payload, log_handles, says_unsaved

__all__ = ["PrivacyFilter"]

# The entity an event belongs to, for the kinds a deletion names: (kind, body fields whose
# values are its handles).
_NODE_IDS = {
    "trace": ("trace", "id"),
    "span": ("span", "id"),
    "generation": ("generation", "id"),
    "generation_result": ("generation", "generation_id"),
    "generation_error": ("generation", "generation_id"),
}


class PrivacyFilter:
    """The unsaved logs and the deleted entities of a window, and what to export of an
    event given them."""

    def __init__(self) -> None:
        self._unsaved: set[tuple[str, str]] = set()  # (project, log handle)
        self._deleted: set[tuple[str, str, str]] = set()  # (project, kind, handle)

    def note(self, item: Any) -> None:
        """Learn from ``item`` (a decoded event, first pass)."""
        parts = _parts(item)
        if parts is None:
            return
        etype, project, body = parts
        if etype == "log" and says_unsaved(body):
            self._unsaved.update((project, handle) for handle in log_handles(body))
        elif etype == "delete" and isinstance(body.get("kind"), str):
            kind = body["kind"]
            handles = log_handles(body) if kind == "log" else _ids(body.get("id"))
            self._deleted.update((project, kind, handle) for handle in handles)

    def screen(self, item: Any) -> Any | None:
        """``item`` as an archive may keep it; None when it belongs to a deleted entity."""
        parts = _parts(item)
        if parts is None:
            return item
        etype, project, body = parts
        if self._deleted and self._is_deleted(etype, project, body):
            return None
        if etype in LOG_TYPES and (
            says_unsaved(body) or any((project, h) in self._unsaved for h in log_handles(body))
        ):
            return event_without_payload(item)
        return item

    def _is_deleted(self, etype: str, project: str, body: dict[str, Any]) -> bool:
        if etype in LOG_TYPES:
            kind, handles = "log", log_handles(body)
        elif etype == "feedback" and body.get("trace_id") is not None:  # goes with its trace
            kind, handles = "trace", _ids(body["trace_id"])
        elif etype == "feedback" and body.get("session_id") is not None:  # a Maxim session's
            kind, handles = "session", _ids(body["session_id"])
        elif etype == "feedback":  # rates a log: goes with it
            kind = "log"
            handles = log_handles(
                {"id": body.get("log_id"), "reference_id": body.get("reference_id")}
            )
        elif etype == "node" and isinstance(body.get("kind"), str):  # Maxim's other nodes
            kind, handles = body["kind"], _ids(body.get("id"))
        elif etype in _NODE_IDS:
            kind, field = _NODE_IDS[etype]
            handles = _ids(body.get(field))
        else:
            return False
        return any((project, kind, handle) in self._deleted for handle in handles)


def _ids(value: Any) -> list[str]:
    return [f"id:{value}"] if isinstance(value, str) else []


def _parts(item: Any) -> tuple[str, str, dict[str, Any]] | None:
    """``(type, project, body)`` of a decoded event, None when it has no such shape."""
    if not isinstance(item, dict):
        return None
    etype, project, body = item.get("type"), item.get("project"), item.get("body")
    if not isinstance(etype, str) or not isinstance(project, str) or not isinstance(body, dict):
        return None
    return etype, project, body
