"""One backoff policy: exponential, capped, jittered, reset after a success.

Every retry loop of logflume waits by it: the SDK's worker and the gateway's publisher
between sends to a broker that is away (through :class:`producers.sdk.drain.RetryPolicy`),
the sink between writes to PostgreSQL, the supervisor between restarts of a stage.

The n-th delay after a reset (n = 0, 1, ...) is ``min(max_s, initial_s * factor**n)``, of
which a random share of up to ``jitter`` is taken off: ``jitter=1`` is "full jitter" (a
delay drawn uniformly from ``[0, d]``, so that many clients retrying at once spread out),
``jitter=0.5`` draws from ``[d/2, d]``, ``jitter=0`` waits exactly ``d``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays to wait between tries; :meth:`next` takes one, :meth:`reset` starts over."""

    __slots__ = ("_current", "_uniform", "attempts", "factor", "initial_s", "jitter", "max_s")

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        *,
        factor: float = 2.0,
        jitter: float = 1.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if initial_s < 0 or max_s < 0:
            raise ValueError("backoff delays must not be negative")
        if factor < 1:
            raise ValueError("the backoff factor must be at least 1")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter is a share of the delay, from 0 to 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._uniform = uniform
        self._current = min(initial_s, max_s)
        self.attempts = 0  # delays taken since the last reset

    @property
    def ceiling_s(self) -> float:
        """The next delay before jitter (what :meth:`next` returns at most)."""
        return self._current

    def next(self) -> float:
        """The delay before the next try; the one after it grows by ``factor`` up to
        ``max_s``."""
        delay = self._current
        self._current = min(self._current * self.factor, self.max_s)
        self.attempts += 1
        if self.jitter:
            delay = self._uniform(delay * (1 - self.jitter), delay)
        return delay

    def reset(self) -> None:
        """A try succeeded (or the fault is old): the next delay is ``initial_s`` again."""
        self._current = min(self.initial_s, self.max_s)
        self.attempts = 0
