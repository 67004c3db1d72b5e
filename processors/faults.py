"""Fault injection for tests: a stage that wedges on an await that never returns.

Test-only. Off unless ``LOGFLUME_PROCESSOR_FAULT_WEDGE`` names where to wedge:

- ``stream``: after ``LOGFLUME_PROCESSOR_FAULT_WEDGE_AFTER`` records, the stage's agent awaits
  a future nobody completes (its records are never acknowledged, nothing more is read): what
  the watchdog (:mod:`processors.watchdog`) must detect;
- ``send``: the stage's next send after that many records awaits such a future inside the
  send's bound: what the send timeout must end;
- ``loop``: the stage's agent blocks the event loop itself in synchronous code (a sleep that
  never ends): what the watchdog's thread must detect.

With ``LOGFLUME_PROCESSOR_FAULT_WEDGE_MARKER`` set, only the first worker to get there wedges
(it creates the file, atomically); workers started afterwards with the same setting, such as
the restarted worker, run normally.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Literal, NoReturn

__all__ = ["WedgeHook", "WedgePoint"]

log = logging.getLogger(__name__)

WedgePoint = Literal["stream", "send", "loop"]


class WedgeHook:
    """Fires once per process at ``point``, once a stage has reduced ``after`` records."""

    def __init__(self, point: WedgePoint, after: int, marker: Path | None = None) -> None:
        self.point = point
        self.after = after
        self.marker = marker
        self._armed = True

    def due(self, point: WedgePoint, records: int) -> bool:
        """True once (then never again in this process) when the wedge should happen now."""
        if not self._armed or point != self.point or records < self.after:
            return False
        self._armed = False
        if self.marker is None:
            return True
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False  # another worker wedged already
        return True

    async def hang(self, stage: str) -> NoReturn:
        """Await a future that nobody will ever complete."""
        log.warning(
            "fault injection: stage %s wedged at %s (an await that never returns)",
            stage,
            self.point,
        )
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")  # pragma: no cover

    def block(self, stage: str) -> NoReturn:
        """Block the calling thread (the event loop's) for good."""
        log.warning("fault injection: stage %s wedged at loop (a blocking call)", stage)
        while True:
            time.sleep(3600)
