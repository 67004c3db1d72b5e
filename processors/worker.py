"""Running a processor worker: :func:`run_worker` (behind ``logflume process``) and
``python -m processors.worker [--stages entities,traces,groups]``.

Any number of workers may run the same stages: they form one consumer group (the app id)
and share the partitions; when one dies, the group coordinator notices after
``session_timeout_s`` and its partitions, with their state recovered from the changelog,
move to the others. Each worker has its own data folder and no web server unless
``LOGFLUME_PROCESSOR_WEB_PORT`` is set, so several run side by side on one machine.

Before Faust starts, the worker makes sure of its topics: the pipeline's topics (created
and checked as by ``logflume up``) and the changelog topics of its tables (compacted, with
the pipeline's partition count), since Faust itself is not allowed to declare topics. It
also fixes two ways Faust's consumer loses or stalls records when partitions move
(:func:`patch_faust_consumer`): without them a failover lost records in about one test run
in four; and a worker whose stream buffers filled up reads on at once when they drain
instead of up to a second later (:mod:`processors.backpressure`). A watchdog
(:mod:`processors.watchdog`) ends a worker that stops making progress,
whatever the cause, with status 75 for its supervisor to restart.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import faust

from kernel.errors import ServiceError
from kernel.logs import LogFormat, apply_format, hide_payload_debug
from kernel.runtime import HEAP, tune_gc
from kernel.settings import Settings
from kernel.topics import ensure_topics
from processors.agents import STAGES, Reducers, Stage, StageName, install_stages
from processors.app import ProcessorOptions, make_app, worker_datadir
from processors.assignor import patch_faust_assignor
from processors.backpressure import patch_faust_paused_fetch
from processors.codec import RECORD_OVERHEAD_BYTES
from processors.commits import patch_faust_commits
from processors.metrics import instrument_processor
from processors.pricing import warm_prices
from processors.watchdog import Watchdog, where_it_waits

__all__ = [
    "build",
    "changelog_topics",
    "main",
    "parse_stages",
    "patch_faust_consumer",
    "patch_faust_fetch_wait",
    "prepare_topics",
    "run_worker",
    "watchdog_for",
]

log = logging.getLogger(__name__)

_QUIET_LOGGERS = ("faust", "mode")


def build(
    settings: Settings,
    *,
    stages: Sequence[StageName] = STAGES,
    options: ProcessorOptions | None = None,
    reducers: Reducers | None = None,
) -> tuple[faust.App, dict[StageName, Stage]]:
    """The app with the given stages installed (not started)."""
    options = options or settings.processor
    app = make_app(settings, options)
    return app, install_stages(app, settings, options, stages, reducers)


# Kafka compacts only closed segments, and a segment closes at 1 GB or after 7 days by
# default: a changelog was never compacted in practice, so a worker that took a partition
# over replayed every write ever made to it, expired states and tombstones included (after
# a 20-minute soak at 1,500 events/s, its workers took 323 s to process again). Segments
# that close every 2 minutes, cleaned once 10% of a log is dirty, keep a changelog near its
# live states. A tombstone (an expired state) is kept 5 minutes after compaction: a
# recovery that reads past one after that brings an expired state back, which the next
# expiry sweep removes again.
CHANGELOG_COMPACTION = {
    "segment.ms": str(2 * 60 * 1000),
    "segment.bytes": str(64 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(5 * 60 * 1000),
}


def changelog_topics(stages: Mapping[StageName, Stage]) -> list[str]:
    return [stage.table.changelog_topic.get_topic_name() for stage in stages.values()]


async def prepare_topics(settings: Settings, changelogs: Sequence[str]) -> None:
    """Ensure the pipeline's topics and the (compacted) changelog topics, all with
    ``settings.partitions`` partitions (the state of a partition lives on the changelog
    partition of the same number); raises :class:`ServiceError` otherwise."""
    limit = str(settings.max_record_bytes + RECORD_OVERHEAD_BYTES)
    config = {"cleanup.policy": "compact", "max.message.bytes": limit, **CHANGELOG_COMPACTION}
    await ensure_topics(settings, extra={name: config for name in changelogs})


def patch_faust_consumer() -> None:
    """Two fixes to faust-streaming 0.15.3's consumer without which a failover loses
    records or hangs (found by ``tests/integration/processors``; idempotent).

    1. A fetch in flight when the group rebalances was handed Faust's *live* set of active
       partitions, so it returned records of partitions assigned by the new generation
       (changelogs just rewound for recovery, newly assigned sources) that Faust then
       discarded as stale: their positions had moved on, so recovery waited forever and
       sources skipped records. Each fetch now gets a copy of the set it was started with.
    2. After a rebalance Faust seeks each partition to its committed offset, but aiokafka
       skips the seek when there is no commit (or it is 0), leaving the position wherever
       discarded fetches moved it; the skipped offsets later look like a gap that Faust
       acknowledges. Never-committed source partitions are now rewound to their beginning.
    """
    from faust.transport import consumer as faust_consumer
    from faust.transport.drivers import aiokafka as faust_aiokafka

    thread_cls: Any = faust_aiokafka.AIOKafkaConsumerThread
    consumer_cls: Any = faust_consumer.Consumer
    if getattr(consumer_cls, "_logflume_patched", False):
        return
    fetch = thread_cls.getmany

    async def getmany(self: Any, active_partitions: set[Any] | None, timeout: float) -> Any:
        frozen = None if active_partitions is None else set(active_partitions)
        # A partition that becomes active during the wait is not in the copy: the wait
        # ends within the fetch wait, not Faust's 1 s (processors/backpressure.py).
        wait_s = getattr(thread_cls, "_logflume_fetch_wait_s", timeout)
        return await fetch(self, frozen, min(timeout, wait_s))

    async def perform_seek(self: Any) -> None:
        committed = await self.seek_to_committed()
        self._read_offset.update(
            {tp: off if off is not None and off >= 0 else None for tp, off in committed.items()}
        )
        self._committed_offset.update(
            {tp: off or None for tp, off in committed.items() if off is not None}
        )
        acking = self.app.topics.acks_enabled_for
        never = [tp for tp, off in committed.items() if not off and acking(tp.topic)]
        if never:
            await self._thread.seek_to_beginning(*never)

    thread_cls.getmany = getmany
    consumer_cls.perform_seek = perform_seek
    consumer_cls._logflume_patched = True


def patch_faust_fetch_wait(wait_ms: int) -> None:
    """Set how long the worker's fetches wait at the broker for data (``fetch_wait_ms``).

    faust-streaming 0.15.3 builds its aiokafka consumer with ``fetch_max_wait_ms=1500``
    and no setting for it. aiokafka keeps one fetch in flight per broker and leaves out the
    partitions that still hold fetched records, so records that reach a stage's input (the
    stage before it just flushed) after that fetch was sent waited for it to come back: up
    to 1.5 s when its partitions stayed empty. The whole-pipeline benchmark saw it as a
    tail: entities and traces final 2.4 s after the first emit, sessions and prompt-version
    stats 2.7 s later with the processes mostly idle. A shorter wait costs an empty fetch
    per ``wait_ms`` while idle. The same bound caps Faust's wait for the consumer thread's
    records (:func:`patch_faust_consumer`). The last value set wins (one app per worker
    process)."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    thread_cls: Any = faust_aiokafka.AIOKafkaConsumerThread
    thread_cls._logflume_fetch_wait_s = wait_ms / 1000
    create = getattr(thread_cls, "_logflume_create_worker_consumer", None)
    if create is None:
        create = thread_cls._logflume_create_worker_consumer = thread_cls._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = wait_ms  # read when the consumer starts its fetcher
        return consumer

    thread_cls._create_worker_consumer = create_worker_consumer


class _Worker(faust.Worker):
    """Faust's worker without its terminal spinner, so that logging stays at ``loglevel``.

    At WARN and above, Faust's worker sets the root logger to DEBUG and adds a handler that
    turns the spinner on every record: every ``log.debug`` of every library then builds a
    LogRecord just to drop it (the ~20% the measurements of architecture section 4 found).
    """

    log_format: LogFormat = "text"

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)
        logger.setLevel(level)
        apply_format(self.log_format, logger)  # --log-format json: JSON lines
        for name in _QUIET_LOGGERS:  # Faust's and mode's INFO is a line per service state
            logging.getLogger(name).setLevel(max(level, logging.WARNING))

    def _on_sigusr1(self) -> None:
        """``kill -USR1 <worker>``: where every thread and task waits, logged as code
        locations only. mode's own answer (``logging.cry``) prints every frame's local
        variables too: events' payloads, settings with credentials."""
        log.warning("SIGUSR1: where the worker waits:\n%s", where_it_waits())

    def _on_sigusr2(self) -> None:
        """mode's answer is a pdb prompt on the worker's stdin: a worker would stop there."""
        log.warning("SIGUSR2 ignored (SIGUSR1 logs where the worker waits)")


def watchdog_for(
    app: faust.App, settings: Settings, options: ProcessorOptions, stages: Mapping[StageName, Stage]
) -> Watchdog:
    """The worker's watchdog over the source partitions of ``stages``. A rebalance may wait
    for the group's other members up to the rebalance timeout, plus the session timeout to
    notice a dead one: it is stuck only past both (or past ``stall_s``, if longer)."""
    return Watchdog(
        app,
        sources={stage.table.source_topic: name for name, stage in stages.items()},
        changelogs=set(changelog_topics(stages)),
        stall_s=options.stall_s,
        rebalance_bound_s=options.rebalance_timeout_s + options.session_timeout_s,
        bootstrap_servers=settings.bootstrap_servers,
        # A committed offset normally moves every commit interval, once a window's sends
        # are acknowledged: held much longer while the stream reads on, it is stuck.
        commit_bound_s=max(
            2 * options.stall_s, 2 * options.commit_interval_s + 3 * options.send_timeout_s
        ),
    )


def run_worker(
    settings: Settings,
    *,
    stages: Sequence[StageName] = STAGES,
    options: ProcessorOptions | None = None,
    reducers: Reducers | None = None,
) -> NoReturn:
    """Run one worker until SIGTERM/SIGINT; exits the process (status 0 on a clean stop)."""
    options = options or settings.processor
    patch_faust_consumer()
    patch_faust_fetch_wait(options.fetch_wait_ms)
    patch_faust_commits()  # never commit past an unacknowledged record: processors/commits.py
    patch_faust_assignor()  # the post-rebalance stall of issue 14: processors/assignor.py
    patch_faust_paused_fetch()  # no 1 s sleep with every partition paused
    hide_payload_debug()  # Faust's aiokafka clients: their DEBUG lines print records
    warm_prices()  # before tune_gc: the price data is then frozen with the rest
    tune_gc()
    HEAP.full_interval_s = options.gc_full_interval_s
    worker_datadir(settings, options).parent.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, installed = build(settings, stages=stages, options=options, reducers=reducers)
    preparing = prepare_topics(settings, changelog_topics(installed))
    try:
        loop.run_until_complete(asyncio.wait_for(preparing, settings.startup_timeout_s))
    except TimeoutError:
        raise ServiceError(
            f"Kafka did not answer within {settings.startup_timeout_s:g} s while preparing "
            "the processor topics"
        ) from None
    watchdog = watchdog_for(app, settings, options, installed)
    # Prometheus /metrics, /healthz and /readyz when configured
    instrument_processor(settings, installed, watchdog)
    watchdog.start(loop)
    worker = _Worker(
        app,
        loop=loop,
        loglevel=options.log_level,
        quiet=True,
        redirect_stdouts=False,
    )
    worker.log_format = settings.log_format
    worker.execute_from_commandline()


def parse_stages(text: str) -> tuple[StageName, ...]:
    """``"entities,traces"`` -> the stages, in pipeline order; ValueError if unknown."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    chosen = tuple(name for name in STAGES if name in names)
    if not chosen or len(chosen) != len(set(names)):
        raise ValueError(f"stages are some of {', '.join(STAGES)}; got {text!r}")
    return chosen


def main(argv: Sequence[str] | None = None, **kwargs: Any) -> NoReturn:
    """``python -m processors.worker``: settings from the environment."""
    parser = argparse.ArgumentParser(prog="python -m processors.worker", description=__doc__)
    parser.add_argument(
        "--stages",
        type=parse_stages,
        default=STAGES,
        help="comma-separated: entities,traces,groups (default all)",
    )
    args = parser.parse_args(argv)
    run_worker(Settings(), stages=args.stages, **kwargs)


if __name__ == "__main__":
    main()
