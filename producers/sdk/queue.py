"""The bounded in-memory queue between the callers' threads and the worker.

``put`` is the hot path: a length check and a ``deque.append`` (atomic under the GIL, so
no lock); it never blocks and returns False when the queue is full. The queue is bounded
by count and by bytes. The byte bound cannot be checked per call without serializing the
event (the cost the hot path avoids), so the worker, which does serialize, reports the
encoded sizes it sees and the queue turns the byte bound into a count limit:
``min(max_events, max_bytes / average encoded size)``. The caller pays one comparison.

Several threads may race past the check at once, so the queue can exceed its limit by at
most the number of threads calling at that instant. A put that raced :meth:`EventQueue.close`
(checked before it, appended after) takes its item back unless the worker already took it,
so an event is never left in a queue nobody drains.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .encoding import Item

__all__ = ["EventQueue"]

_INITIAL_AVG_BYTES = 1024.0
_EMA_WEIGHT = 0.2


class EventQueue:
    """FIFO of :data:`~producers.sdk.encoding.Item`; many producers, one consumer."""

    __slots__ = ("_avg_bytes", "_items", "_max_bytes", "_max_events", "_wake", "_wake_at", "limit")

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        *,
        wake_at: int,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._items: deque[Item] = deque()
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._avg_bytes = _INITIAL_AVG_BYTES
        self._wake_at = wake_at
        self._wake = wake
        self.limit = 0
        self._recompute_limit()

    def set_waker(self, wake: Callable[[], None] | None) -> None:
        """Called (on the caller's thread) each time the queue reaches ``wake_at`` items."""
        self._wake = wake

    def put(self, item: Item) -> bool:
        """Append unless full; wakes the worker once per ``wake_at`` items. Never blocks."""
        items = self._items
        size = len(items)
        if size >= self.limit:
            return False
        items.append(item)
        if self.limit == 0:  # closed between the check and the append (another thread)
            return not self._withdraw(item)
        if size + 1 == self._wake_at and self._wake is not None:
            self._wake()
        return True

    def _withdraw(self, item: Item) -> bool:
        """Take back an item appended after :meth:`close`: True if it was still queued (the
        worker's last drain may have run already: nothing would ever take it), False if the
        worker took it."""
        try:
            self._items.remove(item)
        except ValueError:
            return False
        return True

    def close(self) -> None:
        """Refuse every further ``put``."""
        self._max_events = 0
        self.limit = 0

    def clear(self) -> None:
        """Forget every queued item (a forked child's copy of its parent's queue)."""
        self._items.clear()

    def drain(self, max_items: int) -> list[Item]:
        """Take up to ``max_items`` from the head (worker side)."""
        items = self._items
        out: list[Item] = []
        pop = items.popleft
        for _ in range(min(max_items, len(items))):
            try:
                out.append(pop())
            except IndexError:  # pragma: no cover - only the worker pops
                break
        return out

    def observe(self, encoded_bytes: int, count: int) -> None:
        """The worker's report of the encoded size of ``count`` events it took."""
        if count <= 0:
            return
        avg = encoded_bytes / count
        self._avg_bytes += _EMA_WEIGHT * (avg - self._avg_bytes)
        self._recompute_limit()

    @property
    def average_event_bytes(self) -> float:
        return self._avg_bytes

    def __len__(self) -> int:
        return len(self._items)

    def _recompute_limit(self) -> None:
        if self._max_events <= 0:
            self.limit = 0
            return
        by_bytes = int(self._max_bytes / max(self._avg_bytes, 1.0))
        self.limit = max(1, min(self._max_events, by_bytes))
