"""The three stages in one process, one after another: the engine of ``logflume replay``
and the oracle of the integration tests (``tests/integration/sinks/stream.py``).

Live, stage 1 (``entities``), stage 2 (``traces``) and the groups step run as Faust agents
connected by Kafka topics. Here the same pure reducers run over in-memory tables (plain
dicts) and hand their outputs straight to the next stage. Two ways to drive them:

- :meth:`SequentialStages.run_record` mirrors the live topology record by record: outputs
  are packed into records per destination partition exactly as the agents pack them, each
  packed record is reduced by the next stage, and every record is handed to ``publish``.
  The tests use it to know what the Faust workers must publish.
- :meth:`SequentialStages.run_batch` is replay's fast path. Stage 1 still runs record by
  record (so dead letters name their exact raw-topic origin, as live), but stage 2 and the
  groups step run once per batch over the *newest* output of each entity / contribution of
  each member. That is safe because every rule downstream keeps, per member, only its
  highest version, and a group's totals are the sums over those (``processors.assembly``):
  the final tables are the same whatever the grouping, while the work per batch shrinks
  to one reduction per touched entity and group instead of one per intermediate version.
  It also skips the JSON round trip between stages (the outputs never leave the process).

State never expires here (the Faust tables expire states ``state_ttl_s`` after their last
event): a replay merges the whole selected history. See the README's replay section.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from logflume.settings import Topics

from .codec import encode_dead_letter, pack_outputs
from .outcome import DeadLetter, Origin, Outcome, Output
from .stage1 import process_events_record
from .stage2 import process_entities, process_entities_record, process_groups, process_groups_record

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


@dataclass(slots=True)
class _Tables:
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)


def _stable_offset(raw: bytes) -> int:
    """A stand-in offset for a dead letter of replay's stage 2/3: a hash of the item, so
    that a replay run again stores the same dead letter, not a second one."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") >> 1


def _poison(origin: Origin, raw: bytes, exc: Exception) -> Outcome:
    """A reducer raised: the record becomes one dead letter, as the Faust agent does."""
    reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]
    return Outcome(dead_letters=[DeadLetter(origin, -1, reason, raw)])


class SequentialStages:
    """Stage 1 -> stage 2 -> groups over in-memory tables (one instance = one isolated state)."""

    def __init__(
        self, topics: Topics, *, partitions: int, max_event_bytes: int, max_record_bytes: int
    ) -> None:
        self.topics = topics
        self.partitions = partitions
        self.max_event_bytes = max_event_bytes
        self.max_record_bytes = max_record_bytes
        self.tables = _Tables()
        self._offsets: dict[tuple[str, int], int] = {}  # of the records run_record packs

    # -- stage 1, shared ------------------------------------------------------------------

    def _stage1(self, partition: int, offset: int, value: bytes) -> Outcome:
        origin = Origin(self.topics.events, partition, offset)
        try:
            outcome = process_events_record(
                value, origin, self.tables.entities.get, max_event_bytes=self.max_event_bytes
            )
        except Exception as exc:
            return _poison(origin, value, exc)
        self.tables.entities.update(outcome.writes)
        return outcome

    # -- the live topology, record by record -----------------------------------------------

    def run_record(self, partition: int, offset: int, value: bytes, publish: Publish) -> Emitted:
        """One raw record through the three stages as the Faust agents would run it; every
        record a stage sends (entities, rollups, groups, dead letters) goes to ``publish``."""
        topics, tables = self.topics, self.tables
        emitted = Emitted(events_records=1)
        out1 = self._stage1(partition, offset, value)
        emitted.duplicates += out1.duplicates
        self._dead(out1.dead_letters, emitted, publish)
        emitted.entities += [o.value for o in out1.outputs]
        for e_partition, e_value in self._pack(topics.entities, out1.outputs, publish):
            origin = self._origin(topics.entities, e_partition)
            out2 = process_entities_record(e_value, origin, tables.traces.get)
            tables.traces.update(out2.writes)
            self._dead(out2.dead_letters, emitted, publish)
            emitted.rollups += [o.value for o in out2.outputs]
            self._pack(topics.rollups, out2.outputs, publish)
            for g_partition, g_value in self._pack(topics.groups, out2.regroup, publish):
                origin = self._origin(topics.groups, g_partition)
                out3 = process_groups_record(g_value, origin, tables.groups.get)
                tables.groups.update(out3.writes)
                self._dead(out3.dead_letters, emitted, publish)
                emitted.rollups += [o.value for o in out3.outputs]
                self._pack(topics.rollups, out3.outputs, publish)
        return emitted

    def _origin(self, topic: str, partition: int) -> Origin:
        offset = self._offsets.get((topic, partition), 0)
        self._offsets[(topic, partition)] = offset + 1
        return Origin(topic, partition, offset)

    def _pack(self, topic: str, outputs: list[Output], publish: Publish) -> list[tuple[int, bytes]]:
        packed = pack_outputs(outputs, self.partitions, self.max_record_bytes)
        if packed.oversized:
            raise ValueError(f"{len(packed.oversized)} outputs too large for a {topic} record")
        for partition, record in packed.records:
            publish(topic, partition, record)
        return packed.records

    def _dead(self, letters: list[DeadLetter], emitted: Emitted, publish: Publish) -> None:
        for letter in letters:
            publish(self.topics.deadletter, None, encode_dead_letter(letter, self.max_record_bytes))
        emitted.dead_letters += letters

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
        newest: dict[str, dict[str, Any]] = {}  # entity key -> its newest output
        for partition, offset, value in records:
            emitted.events_records += 1
            out1 = self._stage1(partition, offset, value)
            emitted.duplicates += out1.duplicates
            emitted.dead_letters += out1.dead_letters
            for output in out1.outputs:
                newest[output.value["key"]] = output.value  # a later output has >= version
        emitted.entities = list(newest.values())
        return emitted

    def downstream(self, entities: list[dict[str, Any]], emitted: Emitted) -> None:
        """Stage 2 and the groups step once over ``entities`` (at most one per key); their
        rollups and dead letters are added to ``emitted``."""
        out2 = self._reduce("traces", entities, process_entities, self.tables.traces)
        emitted.rollups += [o.value for o in out2.outputs]
        emitted.dead_letters += out2.dead_letters
        contributions: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for output in out2.regroup:
            item = output.value
            key = (item["group"], item["project"], item["id"], item["member"])
            current = contributions.get(key)
            if current is None or current["summary"]["version"] <= item["summary"]["version"]:
                contributions[key] = item
        groups = list(contributions.values())
        out3 = self._reduce("groups", groups, process_groups, self.tables.groups)
        emitted.rollups += [o.value for o in out3.outputs]
        emitted.dead_letters += out3.dead_letters

    def _reduce(
        self,
        stage: str,
        items: list[dict[str, Any]],
        reduce: Callable[[list[dict[str, Any]], Any, Outcome], None],
        table: dict[str, dict[str, Any]],
    ) -> Outcome:
        """Run a downstream stage over ``items``. If it raises, run it item by item so that
        only the items it cannot handle become dead letters (live, the record would)."""
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
