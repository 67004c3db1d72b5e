"""The stages as Faust agents around :class:`processors.topology.StageRunner`: decode,
reduce, write the state, hold the outputs in the window, flush, acknowledge.

- ``entities`` (stage 1) reads the raw events topic, keeps one state per entity and emits
  canonical entities to the entities topic (:func:`processors.stage1.process_events_record`);
- ``traces`` (stage 2) reads the entities topic, keeps one state per trace, emits trace
  rollups to the rollups topic and each member's contribution to the groups topic, keyed by
  session or prompt version (:func:`processors.stage2.process_entities_record`);
- ``groups`` (stage 2, second step) reads the groups topic, keeps one state per session and
  prompt version and emits their rollups (:func:`processors.stage2.process_groups_record`).

Per record (never ``stream.take()``: table writes must happen inside the iteration of the
record that causes them, faust-streaming issue 497): the runner reduces the record's bytes
with a lookup into the table; each write it returns is assigned once (``table[key] =
state``, the changelog partition is the record's) and sent with the window; the outputs
wait in the stage's output window, which keeps the newest version per identity
(:mod:`processors.topology`), and the dead letters with them (sent before the window's
records are acknowledged). A reducer that raises turns the whole record into one dead
letter (index -1) and the stream goes on.

The window is flushed when it holds ``window_records`` records or is ``window_ms`` old,
whichever comes first (a background task closes a window that no new record closes).
The stream runs with manual acknowledgement (``stream.noack()``): a record is acknowledged
only after Kafka has acknowledged the outputs of its window and the window's state writes
are sent, so Faust, which commits only acknowledged offsets and flushes its producer
first, never commits a record whose outputs are still in the window. That wait happens in
the background while the stream reduces the next window (one window at most).
A worker killed with a window open loses nothing: its records are redelivered
and re-emit every entity and group they touch (duplicates included).

Failing to *send* is another matter: it is not the record's fault, and Faust would still
commit the record's offset. A send that fails ends the worker at once without committing
(:func:`processors.app.fatal`): at-least-once then re-runs the records after the last commit.
So does a send, a delivery or a window's completion that does not finish within
``send_timeout_s``: no await of the stages is without a bound, since one that never returns
holds its records unacknowledged and a rebalance waits for them forever (what is left, an
await of Faust's own, is the watchdog's: :mod:`processors.watchdog`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NoReturn

import faust
from faust.types import EventT, StreamT

from kernel.runtime import HEAP
from kernel.settings import Settings
from processors.app import (
    ExpiringTable,
    ProcessorOptions,
    app_id,
    check_delivered,
    cold_dir,
    fatal,
    snapshot_dir,
)
from processors.codec import encode_dead_letter
from processors.faults import WedgeHook
from processors.outcome import DeadLetter, Origin
from processors.snapshots import TableSnapshot, write_partitions
from processors.topology import (
    STAGES,
    Reducer,
    StageName,
    StageRunner,
    real_reducer,
    stage_specs,
)

__all__ = [
    "STAGES",
    "Reducer",
    "Reducers",
    "Stage",
    "StageName",
    "StageStats",
    "install_stages",
]

log = logging.getLogger(__name__)

_STATS_INTERVAL_S = 60.0
# A snapshot and the sweep run in the background; either one only costs recovery time or
# memory when it does not finish: one that takes longer than this is abandoned (logged; the
# sweep yields only between whole chunks, so it stops between two), never fatal.
_BACKGROUND_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Reducers:
    """Reducers to run instead of the real ones (tests, benchmarks); None means the real one."""

    entities: Reducer | None = None
    traces: Reducer | None = None
    groups: Reducer | None = None


@dataclass(slots=True)
class StageStats:
    """Counters of one stage in this worker (logged at INFO every minute)."""

    records: int = 0
    inputs: int = 0
    poison_records: int = 0
    dead_letters: int = 0
    writes: int = 0
    outputs: int = 0
    output_records: int = 0
    duplicates: int = 0
    unpriced: int = 0
    flushes: int = 0
    # CPU time of this thread in the stage's reducer (validation, merge, outputs; not the
    # table writes, the sends or Faust): against the worker's CPU, the share of the stage code.
    reduce_cpu_seconds: float = 0.0


class Stage:
    """One stage in one worker: its state table, its agent, its output window, its counters."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        options: ProcessorOptions,
        name: StageName,
        reduce: Reducer,
        wedge: WedgeHook | None = None,
    ) -> None:
        spec = stage_specs(settings.topics)[name]
        self.app = app
        self.name = name
        self.runner = StageRunner(
            spec,
            reduce,
            partitions=settings.partitions,
            max_record_bytes=settings.max_record_bytes,
        )
        self.window_records = options.window_records
        self.window_s = options.window_ms / 1000
        self.deadletter = settings.topics.deadletter
        self.max_record_bytes = settings.max_record_bytes
        # The bound of every send, delivery and window completion (exit past it).
        self.send_timeout_s = options.send_timeout_s
        self.wedge = wedge  # test-only fault injection (processors.faults)
        self.stats = StageStats()
        self.table: ExpiringTable = app.tables.add(
            ExpiringTable(
                app,
                name=spec.table,
                beacon=app.tables.beacon,
                partitions=settings.partitions,
                ttl_s=options.state_ttl_s,
                source_topic=spec.source,
                snapshots=snapshot_dir(settings) if options.snapshot_interval_s else None,
                quiet_s=options.state_quiet_s,
                hot_max=options.state_hot_max,
                cold=cold_dir(settings),
                send_timeout_s=options.send_timeout_s,
                help=f"state of the {name} stage",
            )
        )
        self.source = app.topic(
            spec.source,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )
        self._stream: StreamT[bytes] | None = None
        self._held: list[EventT] = []  # records whose outputs are in the window
        self._dead_letters: list[DeadLetter] = []  # theirs, sent with the window
        self._flush_lock = asyncio.Lock()
        self._completing: asyncio.Future[None] | None = None  # the window being delivered
        self.snapshot_interval_s = options.snapshot_interval_s
        self._snapshot_due_at = time.monotonic() + options.snapshot_interval_s
        self._snapshotting: asyncio.Future[None] | None = None
        self.agent = app.agent(self.source, name=f"{app_id(settings)}.{name}")(self._run)

        async def sweep() -> None:
            try:
                async with asyncio.timeout(_BACKGROUND_TIMEOUT_S):
                    await self.table.expire()
            except TimeoutError:
                log.warning("stage %s: sweep abandoned after %.0f s", name, _BACKGROUND_TIMEOUT_S)

        async def report() -> None:
            log.info("stage %s: %s", name, asdict(self.stats))

        async def close_windows() -> None:
            # A task of its own, not a Faust timer: it also runs while a rebalance or a
            # shutdown waits for the held records to be acknowledged, which only a flush does.
            while True:
                await asyncio.sleep(self.window_s / 4)
                if self.runner.due(self.window_records, self.window_s) or (
                    self.table.has_unsent and not self._held  # expired states' tombstones
                ):
                    await self._flush_or_exit()

        app.timer(options.ttl_sweep_interval_s, name=f"{name}.expire")(sweep)
        app.timer(_STATS_INTERVAL_S, name=f"{name}.stats")(report)
        app.task(close_windows)

    async def _run(self, stream: StreamT[bytes]) -> None:
        manual = self._stream = stream.noack()
        event: EventT
        async for event in manual.events():
            self.reduce(event)
            wedge = self.wedge
            if wedge is not None and wedge.due("stream", self.stats.records):
                await wedge.hang(self.name)
            if wedge is not None and wedge.due("loop", self.stats.records):
                wedge.block(self.name)
            if self.runner.due(self.window_records, self.window_s):
                await self._flush_or_exit()

    def reduce(self, event: EventT) -> None:
        """Reduce one record: write its states, put its outputs in the window and the
        record among the held ones, and its dead letters with them: they are sent with the
        window, before its records are acknowledged.

        Not a coroutine on purpose: a flush between adding the outputs and holding the
        record would send the outputs and never acknowledge the record (a stream that
        then fell quiet would stall its group's next rebalance). Dead letters were once sent
        at once, after holding the record: a flush while that send waited for buffer room
        acknowledged the record, Faust committed it, and a worker that died before the send
        lost the dead letter (``tests/integration/test_liveness.py``, wedged send)."""
        message = event.message
        raw = event.value if event.value is not None else b""
        origin = Origin(message.topic, message.partition, message.offset)
        started = time.thread_time()
        outcome = self.runner.reduce(raw, origin, self.table.lookup_in(message.partition))
        self.stats.reduce_cpu_seconds += time.thread_time() - started
        table = self.table
        for key, state in outcome.writes.items():
            table[key] = state  # its changelog record goes at the flush
        self._held.append(event)  # with its outputs: the window's age is the oldest's
        self._dead_letters += outcome.dead_letters
        stats = self.stats
        stats.records += 1
        stats.inputs += outcome.inputs
        stats.writes += len(outcome.writes)
        stats.duplicates += outcome.duplicates
        stats.unpriced += outcome.unpriced
        stats.poison_records = self.runner.poison_records

    async def _flush_or_exit(self) -> None:
        # A window that can no longer be flushed holds its records unacknowledged, and a
        # rebalance waits for them forever: exit instead, and let redelivery redo them.
        # Bounded: waiting for the window before (itself bounded) and for buffer room per send.
        bound_s = 3 * self.send_timeout_s
        try:
            async with asyncio.timeout(bound_s):
                await self.flush()
        except TimeoutError as exc:
            self._timed_out(exc, "its output window could not be flushed", bound_s)
        except Exception as exc:
            fatal(exc, f"stage {self.name} could not flush its output window")

    async def flush(self) -> None:
        """Send the window's outputs now; its state writes and the acknowledgement of its
        records follow in the background once Kafka has the outputs (:meth:`_complete`).

        At most one window is being completed at a time: a flush first waits for the one
        before it, so the changelog and the acknowledgements keep the order of the windows,
        and the stream is never more than one window ahead of what Kafka holds."""
        async with self._flush_lock:
            await self._settle()
            # The held records, the window's outputs and the state writes are taken together
            # (no await in between): what is reduced while this flush sends is the next one's.
            held, self._held = self._held, []
            dead_letters, self._dead_letters = self._dead_letters, []
            flushed = self.runner.flush()
            writes = self.table.take_writes()
            snapshot = self._snapshot_if_due()  # the table exactly as of these writes
            HEAP.settle()  # what lives on leaves the collector's sight (kernel.runtime)
            sent = [await self._send(t, value, p) for t, p, value in flushed.records]
            self.stats.outputs += sum(len(values) for values in flushed.outputs.values())
            self.stats.output_records += len(flushed.records)
            self.stats.flushes += 1
            self._completing = asyncio.ensure_future(
                self._complete(sent, writes, dead_letters + flushed.dead_letters, held, snapshot)
            )

    async def _settle(self) -> None:
        """Wait for the window being completed, if any."""
        completing, self._completing = self._completing, None
        if completing is not None:  # bounded by its own timeout (it exits past it); and here
            await asyncio.wait_for(completing, 2 * self.send_timeout_s)

    async def _complete(
        self,
        sent: list[asyncio.Future[Any]],
        writes: dict[Any, tuple[int, Any]],
        dead_letters: list[DeadLetter],
        held: list[EventT],
        snapshot: TableSnapshot | None,
    ) -> None:
        """Outputs acknowledged by Kafka, then the state writes, then the records: a state
        never runs ahead of the outputs it produced. Stage 1's outputs carry payload values
        its state does not keep; were the state written first and the worker to die before
        the outputs left, redelivery would find the events merged and their payload gone.
        A window that carries a snapshot also waits for its state writes' acknowledgement,
        so that the offsets the snapshot names are those of the writes it holds (acks come
        in order per partition; a partition this window did not write keeps an earlier
        window's offset, lower than the truth, which recovery survives)."""
        try:
            async with asyncio.timeout(self.send_timeout_s):  # the whole completion
                if sent:
                    await asyncio.gather(*sent)
                written = await self.table.send_writes(writes)
                if dead_letters:
                    await self._send_dead_letters(dead_letters)
                if written and snapshot is not None:
                    # The snapshot holds these writes: it may name their offsets only once
                    # Kafka has them (the next window's writes wait for this completion).
                    await asyncio.gather(*(batch.future for batch in written))
                    self.table.note_durable(written)
                stream = self._stream
                if stream is not None:
                    for event in held:
                        await stream.ack(event)
        except TimeoutError as exc:
            self._timed_out(exc, "its output window was not delivered")
        except Exception as exc:
            # Its records stay unacknowledged, and a rebalance would wait for them forever.
            fatal(exc, f"stage {self.name} could not complete its output window")
        if snapshot is not None:
            offsets = dict(self.table.durable_offsets)
            self._snapshotting = asyncio.ensure_future(self._write_snapshot(snapshot, offsets))

    def _snapshot_if_due(self) -> TableSnapshot | None:
        if self.table.snapshots is None:  # snapshots are off
            return None
        if time.monotonic() < self._snapshot_due_at:
            return None
        if self._snapshotting is not None and not self._snapshotting.done():
            return None
        if self.app.rebalancing or self.app.in_recovery:
            return None
        self._snapshot_due_at = time.monotonic() + self.snapshot_interval_s
        return self.table.snapshot()

    async def _write_snapshot(self, snapshot: TableSnapshot, offsets: dict[int, int]) -> None:
        """A failed snapshot costs only a longer recovery: logged, never fatal."""
        table = self.table
        assert table.snapshots is not None
        began = time.monotonic()
        try:
            async with asyncio.timeout(_BACKGROUND_TIMEOUT_S):
                states = await write_partitions(
                    table.snapshots,
                    table.changelog_topic.get_topic_name(),
                    snapshot,
                    offsets,
                    table.owned_partitions(),
                )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("stage %s: snapshot not written (%s)", self.name, reason)
            return
        log.info(
            "stage %s: snapshot of %d states written in %.2f s",
            self.name,
            states,
            time.monotonic() - began,
        )

    async def _send_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        for dead_letter in dead_letters:
            value = encode_dead_letter(dead_letter, self.max_record_bytes)
            await self._send(self.deadletter, value, None)
        self.stats.dead_letters += len(dead_letters)

    def _timed_out(self, exc: BaseException, what: str, bound_s: float | None = None) -> NoReturn:
        bound_s = self.send_timeout_s if bound_s is None else bound_s
        fatal(exc, f"stage {self.name}: {what} within {bound_s:g} s")

    async def _send(self, topic: str, value: bytes, partition: int | None) -> asyncio.Future[Any]:
        # Waits only for room in the producer's buffer (backpressure), not for delivery
        # (the returned future): Faust flushes the producer before it commits offsets.
        try:
            async with asyncio.timeout(self.send_timeout_s):
                wedge = self.wedge
                if wedge is not None and wedge.due("send", self.stats.records):
                    await wedge.hang(self.name)
                fut = await self.app.producer.send(topic, None, value, partition, None, None)
        except TimeoutError as exc:
            self._timed_out(exc, "a send did not complete")
        except Exception as exc:
            fatal(exc)
        fut.add_done_callback(check_delivered)
        return fut  # type: ignore[no-any-return]


def install_stages(
    app: faust.App,
    settings: Settings,
    options: ProcessorOptions,
    stages: Sequence[StageName] = STAGES,
    reducers: Reducers | None = None,
) -> dict[StageName, Stage]:
    """Add the tables, agents and timers of ``stages`` to ``app``."""
    reducers = reducers or Reducers()
    wedge = None
    if options.fault_wedge is not None:  # test-only fault injection
        marker = options.fault_wedge_marker
        wedge = WedgeHook(options.fault_wedge, options.fault_wedge_after, marker)
    unknown = set(stages) - set(STAGES)
    if unknown or not stages:
        raise ValueError(f"stages must be some of {', '.join(STAGES)}; got {list(stages)}")
    installed: dict[StageName, Stage] = {}
    for name in STAGES:
        if name in stages:
            reduce = getattr(reducers, name) or real_reducer(
                name, max_event_bytes=settings.max_event_bytes
            )
            installed[name] = Stage(app, settings, options, name, reduce, wedge)
    return installed
