"""A bounded map whose entries expire: what a process remembers of the recent past (the
gateway's accepted logs, the SDK's save=false logs) without growing with its uptime."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Recent"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """The newest ``capacity`` keys put, each readable for ``ttl_s`` seconds after its last
    put. Capacity 0 remembers nothing. Not thread-safe: one owner at a time."""

    def __init__(
        self, capacity: int, ttl_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        if self._capacity <= 0:
            return
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def get(self, key: K) -> V | None:
        """The value put under ``key``, None when never put, pushed out or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry[0] > self._ttl_s:
            del self._entries[key]
            return None
        return entry[1]

    def pop(self, key: K) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)
