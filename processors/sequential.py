"""The three stages in one process, one after another: the engine of ``logflume replay``
and the oracle of the integration tests (``tests/integration/sinks/stream.py``).

Live, stage 1 (``entities``), stage 2 (``traces``) and the groups step run as Faust agents
connected by Kafka topics. Here the same :class:`processors.topology.StageRunner` s (the
same reducers, wiring and output windows) run over in-memory tables (plain dicts) and hand
their flushed records straight to the next stage. Two ways to drive them:

- :meth:`SequentialStages.run_record` mirrors the live topology record by record: each
  stage's outputs are held in its window and flushed every ``window_records`` records (1:
  after every record) into records packed per destination partition, exactly as the
  agents pack them; each packed record is reduced by the next stage, and every record is
  handed to ``publish``. :meth:`SequentialStages.finish` flushes what the windows still
  hold. The tests use it to know what the Faust workers must publish.
- :meth:`SequentialStages.run_batch` is replay's fast path. Stage 1 still runs record by
  record (so dead letters name their exact raw-topic origin, as live), but stage 2 and the
  groups step run once per batch over the *newest* output of each entity / contribution of
  each member (the window's rule, over the whole batch). The final tables are the same
  whatever the grouping, while the work per batch shrinks to one reduction per touched
  entity and group instead of one per intermediate version. It also skips the JSON round
  trip between stages (the outputs never leave the process).

State never expires here (the Faust tables expire states ``state_ttl_s`` after their last
event): a replay merges the whole selected history. See the README's replay section.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kernel.runtime import HEAP
from kernel.settings import Settings, Topics

from .codec import encode_dead_letter
from .outcome import DeadLetter, Origin, Outcome
from .stage2 import process_entities, process_groups
from .topology import (
    STAGES,
    StageName,
    StageRunner,
    contribution_identity,
    real_reducer,
    stage_specs,
)

__all__ = ["DERIVED_TOPICS", "Emitted", "Publish", "SequentialStages"]

# topic, partition (None: the producer chooses), value: a record a stage would send.
Publish = Callable[[str, int | None, bytes], None]

# Topics of the dead letters that replay's stages 2 and 3 raise. Live, such a dead letter
# names its record on the entities or groups topic, which replay never writes; either way
# the origin is an artefact of how outputs were packed, not of the history (see verify).
DERIVED_TOPICS = {"traces": "replay.traces", "groups": "replay.groups"}

_MAX_REASON_CHARS = 2000


@dataclass(slots=True)
class Emitted:
    """What the stages emitted: entity outputs, rollups (traces, sessions, prompt
    versions) and dead letters, each in the order produced."""

    entities: list[dict[str, Any]] = field(default_factory=list)
    rollups: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events_records: int = 0
    duplicates: int = 0


def _stable_offset(raw: bytes) -> int:
    """A stand-in offset for a dead letter of replay's stage 2/3: a hash of the item, so
    that a replay run again stores the same dead letter, not a second one."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") >> 1


def _poison(origin: Origin, raw: bytes, exc: Exception) -> Outcome:
    """A reducer raised: the item becomes one dead letter, as a record does live."""
    reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]
    return Outcome(dead_letters=[DeadLetter(origin, -1, reason, raw)])


class SequentialStages:
    """Stage 1 -> stage 2 -> groups over in-memory tables (one instance = one isolated state).

    ``window_records``: records per output window in :meth:`run_record` (1 flushes after
    every record). ``seconds`` accumulates the time spent in each stage (reduce and
    flush), ``records_in`` / ``records_out`` the records each stage read and sent."""

    def __init__(
        self,
        topics: Topics,
        *,
        partitions: int,
        max_event_bytes: int,
        max_record_bytes: int,
        window_records: int = 1,
    ) -> None:
        self.topics = topics
        self.partitions = partitions
        self.max_event_bytes = max_event_bytes
        self.max_record_bytes = max_record_bytes
        self.window_records = window_records
        specs = stage_specs(topics)
        self.runners: dict[StageName, StageRunner] = {
            name: StageRunner(
                specs[name],
                real_reducer(name, max_event_bytes=max_event_bytes),
                partitions=partitions,
                max_record_bytes=max_record_bytes,
            )
            for name in STAGES
        }
        self.tables: dict[StageName, dict[str, dict[str, Any]]] = {name: {} for name in STAGES}
        # The stage reading each topic a stage writes (the rollups go to the sink only).
        self._next: dict[str, StageName] = {specs[name].source: name for name in STAGES}
        self._offsets: dict[tuple[str, int], int] = {}  # of the records the stages send
        self.seconds: dict[StageName, float] = dict.fromkeys(STAGES, 0.0)
        self.records_in: dict[StageName, int] = dict.fromkeys(STAGES, 0)
        self.records_out: dict[str, int] = {}

    @classmethod
    def for_settings(cls, settings: Settings, *, window_records: int = 1) -> SequentialStages:
        """Stages with the topics, partitions and size limits of ``settings``."""
        return cls(
            settings.topics,
            partitions=settings.partitions,
            max_event_bytes=settings.max_event_bytes,
            max_record_bytes=settings.max_record_bytes,
            window_records=window_records,
        )

    def run_records(
        self, records: Iterable[tuple[int, bytes]], publish: Publish | None = None
    ) -> list[Emitted]:
        """Raw records ``(partition, value)`` (offsets counted per partition from 0) through
        :meth:`run_record`, then :meth:`finish`: what each call emitted."""
        sink = publish or (lambda _topic, _partition, _value: None)
        offsets: dict[int, int] = {}
        emitted = []
        for partition, value in records:
            offset = offsets.get(partition, 0)
            offsets[partition] = offset + 1
            emitted.append(self.run_record(partition, offset, value, sink))
        emitted.append(self.finish(sink))
        return emitted

    def derived_records(self) -> int:
        """Records sent so far to the topics between the stages and to the sink (not the
        dead letters): the fan-out the output windows exist to keep small."""
        topics = (self.topics.entities, self.topics.rollups, self.topics.groups)
        return sum(self.records_out.get(topic, 0) for topic in topics)

    # -- one record through one stage ------------------------------------------------------

    def _reduce(self, name: StageName, origin: Origin, value: bytes, emitted: Emitted) -> None:
        started = time.perf_counter()
        outcome = self.runners[name].reduce(value, origin, self.tables[name].get)
        self.tables[name].update(outcome.writes)
        emitted.duplicates += outcome.duplicates
        emitted.dead_letters += outcome.dead_letters
        self.records_in[name] += 1
        self.seconds[name] += time.perf_counter() - started

    # -- the live topology, record by record -----------------------------------------------

    def run_record(self, partition: int, offset: int, value: bytes, publish: Publish) -> Emitted:
        """One raw record into stage 1; every window that fills on the way is flushed into
        the next stage. Every record a stage sends (entities, rollups, groups, dead
        letters) goes to ``publish``."""
        emitted = Emitted(events_records=1)
        self._reduce("entities", Origin(self.topics.events, partition, offset), value, emitted)
        self._publish_dead(emitted, 0, publish)
        if self.runners["entities"].window.records >= self.window_records:
            self._flush("entities", emitted, publish)
            HEAP.settle()  # as the live agents do at each window (kernel.runtime)
        return emitted

    def finish(self, publish: Publish) -> Emitted:
        """Flush every window, in pipeline order (a flush feeds the next stage)."""
        emitted = Emitted()
        for name in STAGES:
            if self.runners[name].window.records:
                self._flush(name, emitted, publish)
        HEAP.settle()
        return emitted

    def _flush(self, name: StageName, emitted: Emitted, publish: Publish) -> None:
        started = time.perf_counter()
        flushed = self.runners[name].flush()
        self.seconds[name] += time.perf_counter() - started
        emitted.entities += flushed.outputs.get(self.topics.entities, [])
        emitted.rollups += flushed.outputs.get(self.topics.rollups, [])
        dead = len(emitted.dead_letters)
        emitted.dead_letters += flushed.dead_letters
        self._publish_dead(emitted, dead, publish)
        downstream: set[StageName] = set()
        for topic, partition, value in flushed.records:
            publish(topic, partition, value)
            self.records_out[topic] = self.records_out.get(topic, 0) + 1
            following = self._next.get(topic)
            if following is None:
                continue
            dead = len(emitted.dead_letters)
            self._reduce(following, self._origin(topic, partition), value, emitted)
            self._publish_dead(emitted, dead, publish)
            downstream.add(following)
        for following in STAGES:  # in pipeline order
            runner = self.runners[following]
            if following in downstream and runner.window.records >= self.window_records:
                self._flush(following, emitted, publish)

    def _origin(self, topic: str, partition: int) -> Origin:
        offset = self._offsets.get((topic, partition), 0)
        self._offsets[(topic, partition)] = offset + 1
        return Origin(topic, partition, offset)

    def _publish_dead(self, emitted: Emitted, start: int, publish: Publish) -> None:
        """Publish the dead letters added to ``emitted`` since index ``start``."""
        for letter in emitted.dead_letters[start:]:
            publish(self.topics.deadletter, None, encode_dead_letter(letter, self.max_record_bytes))

    # -- replay's fast path -----------------------------------------------------------------

    def run_batch(self, records: Iterable[tuple[int, int, bytes]]) -> Emitted:
        """Raw records ``(partition, offset, value)`` through the three stages, stage 2 and
        the groups step once over the newest output of each entity and member."""
        emitted = self.entities_batch(records)
        self.downstream(emitted.entities, emitted)
        return emitted

    def entities_batch(self, records: Iterable[tuple[int, int, bytes]]) -> Emitted:
        """Stage 1 over raw records, one record at a time (exact origins for dead letters);
        the newest output of each entity touched. Stage 1's state is per partition, so
        processes that own disjoint partitions can run this side by side."""
        emitted = Emitted()
        for partition, offset, value in records:
            emitted.events_records += 1
            self._reduce("entities", Origin(self.topics.events, partition, offset), value, emitted)
        drained = self.runners["entities"].drain()
        emitted.entities = [o.value for o in drained.get(self.topics.entities, [])]
        HEAP.settle()  # a batch is replay's window (kernel.runtime)
        return emitted

    def downstream(self, entities: list[dict[str, Any]], emitted: Emitted) -> None:
        """Stage 2 and the groups step once over ``entities`` (at most one per key); their
        rollups and dead letters are added to ``emitted``."""
        out2 = self._reduce_items("traces", entities, process_entities)
        emitted.rollups += [o.value for o in out2.outputs]
        emitted.dead_letters += out2.dead_letters
        contributions: dict[Any, tuple[int, dict[str, Any]]] = {}
        for output in out2.regroup:  # the newest of each, as an output window keeps
            identity, version = contribution_identity(output.value)
            current = contributions.get(identity)
            if current is None or current[0] <= version:
                contributions[identity] = (version, output.value)
        groups = [item for _, item in contributions.values()]
        out3 = self._reduce_items("groups", groups, process_groups)
        emitted.rollups += [o.value for o in out3.outputs]
        emitted.dead_letters += out3.dead_letters

    def _reduce_items(
        self,
        stage: StageName,
        items: list[dict[str, Any]],
        reduce: Callable[[list[dict[str, Any]], Any, Outcome], None],
    ) -> Outcome:
        """Run a downstream stage over ``items``. If it raises, run it item by item so that
        only the items it cannot handle become dead letters (live, the record would)."""
        table = self.tables[stage]
        outcome = Outcome()
        try:
            reduce(items, table.get, outcome)
        except Exception:
            outcome = Outcome()
            for item in items:
                single = Outcome()
                try:
                    reduce([item], table.get, single)
                except Exception as exc:
                    raw = orjson.dumps(item)
                    origin = Origin(DERIVED_TOPICS[stage], 0, _stable_offset(raw))
                    single = _poison(origin, raw, exc)
                table.update(single.writes)
                outcome.outputs += single.outputs
                outcome.regroup += single.regroup
                outcome.dead_letters += single.dead_letters
            return outcome
        table.update(outcome.writes)
        return outcome
