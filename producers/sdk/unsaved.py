"""The SDK's half of ``save=false``: payloads leave the application only when they may be
stored.

A ``log`` that says ``save=false`` loses its payload fields at the call, before it is
queued, spooled or sent; its id and reference id are remembered (bounded and expiring:
``unsaved_capacity``, ``unsaved_ttl_s``), so an update of that log (by id or reference id,
which never repeats the flag) and a later create of it lose theirs too. What this client
cannot know (an update of a log that another process created, or sent before its create)
is stripped by stage 1, which keeps the payload of a ``save=false`` log out of every
state and output, but it stays in the raw topic until the topic's retention ends.
"""

from __future__ import annotations

import threading
from typing import Any

from producers.contract import carries_payload, log_handles, says_unsaved, without_payload

from .recent import Recent

__all__ = ["UnsavedLogs"]


class UnsavedLogs:
    """The handles (``id:…``, ``ref:…``) of the save=false logs this client created."""

    def __init__(self, capacity: int, ttl_s: float) -> None:
        self._handles: Recent[str, bool] = Recent(capacity, ttl_s)
        self._lock = threading.Lock()  # emit calls come from any thread

    def screen(self, etype: str, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` as it may leave the application: without payload fields when it says
        ``save=false`` or addresses a log that did."""
        if etype == "log" and says_unsaved(body):
            handles = log_handles(body)
            with self._lock:
                for handle in handles:
                    self._handles.put(handle, True)
            return without_payload(body)
        if self._handles and carries_payload(body) and self._knows(log_handles(body)):
            return without_payload(body)
        return body

    def _knows(self, handles: list[str]) -> bool:
        with self._lock:
            return any(handle in self._handles for handle in handles)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held the parent's);
        the handles are kept, the child may update the logs its parent created."""
        self._lock = threading.Lock()
