"""``python -m tests.sink_main``: the real sink (:class:`sinks.consumer.Sink`) as a process,
configured from the environment like ``logflume sink`` but without loading the CLI (whose
other commands are not the sink's business); SIGTERM / SIGINT finish the current batch."""

from __future__ import annotations

import asyncio
import logging
import signal

from kernel.runtime import tune_gc
from kernel.settings import Settings
from sinks.consumer import Sink


async def main() -> None:
    sink = Sink(Settings())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, sink.stop)
    await sink.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    tune_gc()  # as `logflume sink` does
    asyncio.run(main())
