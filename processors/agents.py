"""The stages as Faust agents around the pure reducers: decode, reduce, reassign, emit.

- ``entities`` (stage 1) reads the raw events topic, keeps one state per entity and emits
  canonical entities to the entities topic (:func:`processors.stage1.process_events_record`);
- ``traces`` (stage 2) reads the entities topic, keeps one state per trace, emits trace
  rollups to the rollups topic and each member's contribution to the groups topic, keyed by
  session or prompt version (:func:`processors.stage2.process_entities_record`);
- ``groups`` (stage 2, second step) reads the groups topic, keeps one state per session and
  prompt version and emits their rollups (:func:`processors.stage2.process_groups_record`).

Per record (never ``stream.take()``: table writes must happen inside the iteration of the
record that causes them, faust-streaming issue 497): the reducer gets the record's bytes,
its origin and a lookup into the table; each write it returns is assigned once
(``table[key] = state``, the changelog partition is the record's); outputs leave packed one
record per destination partition; dead letters go to the dead-letter topic. A reducer that
raises turns the whole record into one dead letter (index -1) and the stream goes on.

Failing to *send* is another matter: it is not the record's fault, and Faust would still
commit the record's offset. A send that fails ends the worker at once without committing
(:func:`processors.app.fatal`): at-least-once then re-runs the records after the last commit.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import faust
from faust.types import EventT, StreamT

from logflume.settings import Settings
from processors.app import ExpiringTable, ProcessorOptions, app_id, check_delivered, fatal
from processors.codec import encode_dead_letter, pack_outputs
from processors.outcome import DeadLetter, Lookup, Origin, Outcome, Output

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

StageName = Literal["entities", "traces", "groups"]
STAGES: tuple[StageName, ...] = ("entities", "traces", "groups")
# One record's bytes, where it came from, the table lookup -> what to do.
Reducer = Callable[[bytes, Origin, Lookup], Outcome]

_MAX_REASON_CHARS = 2000
_STATS_INTERVAL_S = 60.0


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


@dataclass(frozen=True, slots=True)
class _Spec:
    source: str
    sink: str
    table: str
    regroup: str | None = None  # where Outcome.regroup goes


def _specs(settings: Settings) -> dict[StageName, _Spec]:
    topics = settings.topics
    groups = topics.groups
    return {
        "entities": _Spec(topics.events, topics.entities, "entity_state"),
        "traces": _Spec(topics.entities, topics.rollups, "trace_state", regroup=groups),
        "groups": _Spec(groups, topics.rollups, "group_state"),
    }


def _real_reducer(name: StageName, settings: Settings) -> Reducer:
    # Imported here: a worker loads only the stages it runs.
    if name == "entities":
        from processors.stage1 import process_events_record

        return functools.partial(process_events_record, max_event_bytes=settings.max_event_bytes)
    if name == "traces":
        from processors.stage2 import process_entities_record

        return process_entities_record
    from processors.stage2 import process_groups_record

    return process_groups_record


class Stage:
    """One stage in one worker: its state table, its agent, its counters."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        options: ProcessorOptions,
        name: StageName,
        reduce: Reducer,
    ) -> None:
        spec = _specs(settings)[name]
        self.app = app
        self.name = name
        self.reduce = reduce
        self.sink = spec.sink
        self.regroup = spec.regroup
        self.deadletter = settings.topics.deadletter
        self.partitions = settings.partitions
        self.max_record_bytes = settings.max_record_bytes
        self.stats = StageStats()
        self.table: ExpiringTable = app.tables.add(
            ExpiringTable(
                app,
                name=spec.table,
                beacon=app.tables.beacon,
                partitions=settings.partitions,
                ttl_s=options.state_ttl_s,
                source_topic=spec.source,
                help=f"state of the {name} stage",
            )
        )
        self.lookup: Lookup = self.table.get
        self.source = app.topic(
            spec.source,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )
        self.agent = app.agent(self.source, name=f"{app_id(settings)}.{name}")(self._run)

        async def sweep() -> None:
            await self.table.expire()

        async def report() -> None:
            log.info("stage %s: %s", name, asdict(self.stats))

        app.timer(options.ttl_sweep_interval_s, name=f"{name}.expire")(sweep)
        app.timer(_STATS_INTERVAL_S, name=f"{name}.stats")(report)

    async def _run(self, stream: StreamT[bytes]) -> None:
        event: EventT
        async for event in stream.events():
            await self.handle(
                event.message.topic, event.message.partition, event.message.offset, event.value
            )

    async def handle(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        """Reduce one record, then write its states and send its outputs and dead letters."""
        origin = Origin(topic, partition, offset)
        raw = value if value is not None else b""
        try:
            outcome = self.reduce(raw, origin, self.lookup)
            if outcome.regroup and self.regroup is None:
                raise RuntimeError(f"the {self.name} stage has nowhere to send regroup outputs")
        except Exception as exc:
            outcome = self._poison(origin, raw, exc)
        table = self.table
        for key, state in outcome.writes.items():
            table[key] = state
        await table.send_writes()
        stats = self.stats
        stats.records += 1
        stats.inputs += outcome.inputs
        stats.writes += len(outcome.writes)
        stats.duplicates += outcome.duplicates
        stats.unpriced += outcome.unpriced
        if outcome.outputs:
            await self._send_outputs(self.sink, outcome.outputs, outcome, origin, raw)
        if outcome.regroup and self.regroup is not None:
            await self._send_outputs(self.regroup, outcome.regroup, outcome, origin, raw)
        if outcome.dead_letters:
            await self._send_dead_letters(outcome.dead_letters)

    def _poison(self, origin: Origin, raw: bytes, exc: Exception) -> Outcome:
        self.stats.poison_records += 1
        log.warning(
            "stage %s dead-lettered record %s[%d]@%d: %s raised by the reducer",
            self.name,
            origin.topic,
            origin.partition,
            origin.offset,
            type(exc).__name__,
        )
        reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]
        return Outcome(dead_letters=[DeadLetter(origin, -1, reason, raw)])

    async def _send_outputs(
        self, topic: str, outputs: list[Output], outcome: Outcome, origin: Origin, raw: bytes
    ) -> None:
        packed = pack_outputs(outputs, self.partitions, self.max_record_bytes)
        for partition, record in packed.records:
            await self._send(topic, record, partition)
        self.stats.outputs += len(outputs) - len(packed.oversized)
        self.stats.output_records += len(packed.records)
        for output, size in packed.oversized:
            reason = (
                f"output for key {output.key.decode(errors='replace')} is {size} bytes, "
                f"over the record limit of {self.max_record_bytes} bytes"
            )
            outcome.dead_letters.append(DeadLetter(origin, -1, reason[:_MAX_REASON_CHARS], raw))

    async def _send_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        for dead_letter in dead_letters:
            value = encode_dead_letter(dead_letter, self.max_record_bytes)
            await self._send(self.deadletter, value, None)
        self.stats.dead_letters += len(dead_letters)

    async def _send(self, topic: str, value: bytes, partition: int | None) -> None:
        # Waits only for room in the producer's buffer (backpressure), not for delivery:
        # Faust flushes the producer before it commits offsets.
        try:
            fut = await self.app.producer.send(topic, None, value, partition, None, None)
        except Exception as exc:
            fatal(exc)
        fut.add_done_callback(check_delivered)


def install_stages(
    app: faust.App,
    settings: Settings,
    options: ProcessorOptions,
    stages: Sequence[StageName] = STAGES,
    reducers: Reducers | None = None,
) -> dict[StageName, Stage]:
    """Add the tables, agents and timers of ``stages`` to ``app``."""
    reducers = reducers or Reducers()
    unknown = set(stages) - set(STAGES)
    if unknown or not stages:
        raise ValueError(f"stages must be some of {', '.join(STAGES)}; got {list(stages)}")
    installed: dict[StageName, Stage] = {}
    for name in STAGES:
        if name in stages:
            reduce = getattr(reducers, name) or _real_reducer(name, settings)
            installed[name] = Stage(app, settings, options, name, reduce)
    return installed
