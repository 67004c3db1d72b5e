"""What an export keeps of a ``save=false`` log: no payload field, whatever the raw topic
holds.

The raw topic may hold payloads of unsaved logs: events written by producers that are
not logflume's, and updates that reached a gateway or SDK before the save=false create
they belong to. An export therefore reads its window twice: first to learn which logs
are unsaved (the handles, ``id:…`` and ``ref:…``, of every ``log`` event that says
``save=false``), then to write every event of those logs without its payload fields.
Stage 1 never stores those fields anyway (``save`` is the AND of a log's creates), so an
archive replays to the same tables as the topic it came from.
"""

from __future__ import annotations

from typing import Any

from producers.contract import LOG_TYPES, event_without_payload, log_handles, says_unsaved

__all__ = ["UnsavedLogs"]


class UnsavedLogs:
    """The unsaved logs of a window, as ``(project, handle)``."""

    def __init__(self) -> None:
        self._handles: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self._handles)

    def note(self, item: Any) -> None:
        """Remember the log of ``item`` (a decoded event) if it says ``save=false``."""
        parts = _log_event(item)
        if parts is not None and item["type"] == "log" and says_unsaved(parts[1]):
            project, body = parts
            self._handles.update((project, handle) for handle in log_handles(body))

    def screen(self, item: Any) -> Any:
        """``item`` as an archive may keep it: without payload fields when its log is
        unsaved."""
        parts = _log_event(item)
        if parts is None:
            return item
        project, body = parts
        unsaved = says_unsaved(body) or any(
            (project, handle) in self._handles for handle in log_handles(body)
        )
        return event_without_payload(item) if unsaved else item


def _log_event(item: Any) -> tuple[str, dict[str, Any]] | None:
    """``(project, body)`` of a decoded log or log_update event, else None."""
    if not isinstance(item, dict) or item.get("type") not in LOG_TYPES:
        return None
    project, body = item.get("project"), item.get("body")
    if not isinstance(project, str) or not isinstance(body, dict):
        return None
    return project, body
