"""The processors' topology, written once: which stage reads and writes which topic, and the
step every stage takes per record and per window. The Faust agents
(:mod:`processors.agents`) and the in-process runner of replay and the test oracle
(:mod:`processors.sequential`) both drive a :class:`StageRunner`, so the wiring, the
coalescing and the handling of oversized outputs cannot differ between them.

A stage's outputs are *coalesced over a window*: each record's outputs are held, keyed by
the identity of what they describe (an entity, a trace / session / prompt-version rollup,
a member's contribution to a group), and only the newest version of each is kept. When the
window closes (``window_records`` records, or ``window_s`` after it opened, whichever
comes first) the held outputs are packed, one record per destination partition, and sent.
Without that, every input record fanned out into up to one record per partition of every
downstream topic (14 derived records per input record at 4 partitions), and the
per-record cost of Faust was paid that many times over.

Keeping only the newest version is safe because every consumer downstream (stage 2, the
groups step, the sink) keeps per identity only the highest version it has seen, and a
group's totals are sums over those: what a window drops, the consumer would have
discarded. Ties go to the later output, as they would downstream. One thing is not in the
newest version alone: the payload values an older entity output carried
(``producers.contract.outputs``), which the newer one inherits (the stage's ``merge``).

The records whose outputs a window holds must not be committed before those outputs are
sent: the live agent acknowledges them only after :meth:`StageRunner.flush` and the sends
(see :mod:`processors.agents`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from kernel.settings import Topics
from producers.contract import merge_carried

from .codec import pack_outputs
from .outcome import DeadLetter, Lookup, Origin, Outcome, Output
from .unsaved import private_record

__all__ = [
    "STAGES",
    "Flushed",
    "OutputWindow",
    "Reducer",
    "StageName",
    "StageRunner",
    "StageSpec",
    "contribution_identity",
    "entity_identity",
    "real_reducer",
    "rollup_identity",
    "stage_specs",
]

StageName = Literal["entities", "traces", "groups"]
STAGES: tuple[StageName, ...] = ("entities", "traces", "groups")
# One record's bytes, where it came from, the table lookup -> what to do.
Reducer = Callable[[bytes, Origin, Lookup], Outcome]
# An output value -> (what it describes, its version).
Identity = Callable[[dict[str, Any]], tuple[Hashable, int]]
# (older, newer) outputs of one identity -> what the newer one must hold.
Merge = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]

_MAX_REASON_CHARS = 2000
_PREVIEW_BYTES = 4096  # of an oversized output, kept in its dead letter


def entity_identity(value: dict[str, Any]) -> tuple[Hashable, int]:
    """A canonical entity (stage 1's output): its state key and version."""
    return value["key"], value["version"]


def rollup_identity(value: dict[str, Any]) -> tuple[Hashable, int]:
    """A trace, session or prompt-version rollup."""
    return (value["kind"], value["project"], value["id"]), value["version"]


def contribution_identity(value: dict[str, Any]) -> tuple[Hashable, int]:
    """A member's contribution to a session or prompt version (stage 2 -> groups step)."""
    identity = (value["group"], value["project"], value["id"], value["member"])
    return identity, value["summary"]["version"]


@dataclass(frozen=True, slots=True)
class StageSpec:
    """Where one stage reads, keeps its state, and writes."""

    name: StageName
    source: str
    table: str
    sink: str
    sink_identity: Identity
    regroup: str | None = None  # where Outcome.regroup goes (stage 2 only)
    regroup_identity: Identity | None = None
    sink_merge: Merge | None = None  # what a newer output takes over from an older one


def real_reducer(name: StageName, *, max_event_bytes: int) -> Reducer:
    """The pure reducer of a stage (imported here: a worker loads only the stages it runs)."""
    if name == "entities":
        from .stage1 import process_events_record

        return functools.partial(process_events_record, max_event_bytes=max_event_bytes)
    if name == "traces":
        from .stage2 import process_entities_record

        return process_entities_record
    from .stage2 import process_groups_record

    return process_groups_record


def stage_specs(topics: Topics) -> dict[StageName, StageSpec]:
    """The pipeline: raw events -> entities -> (rollups, groups) -> rollups."""
    return {
        "entities": StageSpec(
            "entities",
            topics.events,
            "entity_state",
            topics.entities,
            entity_identity,
            sink_merge=merge_carried,
        ),
        "traces": StageSpec(
            "traces",
            topics.entities,
            "trace_state",
            topics.rollups,
            rollup_identity,
            regroup=topics.groups,
            regroup_identity=contribution_identity,
        ),
        "groups": StageSpec(
            "groups", topics.groups, "group_state", topics.rollups, rollup_identity
        ),
    }


class _Held:
    """An output in the window, its version and the record it came from (a plain class for
    a native ``__init__``, see :class:`processors.outcome.Output`)."""

    __slots__ = ("origin", "output", "version")

    def __init__(self, version: int, output: Output, origin: Origin) -> None:
        self.version = version
        self.output = output
        self.origin = origin


class OutputWindow:
    """The outputs of the records since the last flush, newest version per identity."""

    def __init__(
        self, identities: dict[str, Identity], merges: dict[str, Merge] | None = None
    ) -> None:
        self._identities = identities
        self._merges = merges or {}
        self._held: dict[str, dict[Hashable, _Held]] = {topic: {} for topic in identities}
        self.records = 0  # records reduced into this window
        self.opened_at: float | None = None  # monotonic time of its first record

    def add(self, topic: str, outputs: list[Output], origin: Origin) -> None:
        identify, held = self._identities[topic], self._held[topic]
        merge = self._merges.get(topic)
        for output in outputs:
            identity, version = identify(output.value)
            current = held.get(identity)
            if current is None:
                held[identity] = _Held(version, output, origin)
            elif current.version <= version:
                if merge is not None:
                    value = merge(current.output.value, output.value)
                    if value is not output.value:
                        output = Output(output.key, value)
                held[identity] = _Held(version, output, origin)

    def count(self, now: float) -> None:
        """One more record went into the window."""
        if self.opened_at is None:
            self.opened_at = now
        self.records += 1

    def take(self) -> dict[str, list[_Held]]:
        """Everything held, per topic; the window starts empty again."""
        taken = {topic: list(held.values()) for topic, held in self._held.items() if held}
        self._held = {topic: {} for topic in self._identities}
        self.records, self.opened_at = 0, None
        return taken


@dataclass(slots=True)
class Flushed:
    """What a window's flush sends: ``(topic, partition, value)`` records and the dead
    letters of outputs too large for any record."""

    records: list[tuple[str, int, bytes]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per topic


class StageRunner:
    """One stage's pure step: reduce a record (state writes and dead letters returned at
    once, outputs held in the window), and flush the window into packed records."""

    def __init__(
        self,
        spec: StageSpec,
        reduce: Reducer,
        *,
        partitions: int,
        max_record_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.reduce_record = reduce
        self.partitions = partitions
        self.max_record_bytes = max_record_bytes
        self.clock = clock
        identities = {spec.sink: spec.sink_identity}
        if spec.regroup is not None and spec.regroup_identity is not None:
            identities[spec.regroup] = spec.regroup_identity
        merges = {spec.sink: spec.sink_merge} if spec.sink_merge is not None else {}
        self.window = OutputWindow(identities, merges)
        self.poison_records = 0

    def reduce(self, raw: bytes, origin: Origin, lookup: Lookup) -> Outcome:
        """Reduce one record. The caller applies ``outcome.writes`` to its table and sends
        ``outcome.dead_letters``; the outputs stay in the window until :meth:`flush`. A
        reducer that raises turns the record into one dead letter (index -1)."""
        try:
            outcome = self.reduce_record(raw, origin, lookup)
            if outcome.regroup and self.spec.regroup is None:
                raise RuntimeError(f"stage {self.spec.name} has nowhere to send regroup outputs")
        except Exception as exc:
            self.poison_records += 1
            reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]
            kept = private_record(raw, lookup)
            outcome = Outcome(dead_letters=[DeadLetter(origin, -1, reason, kept)])
        window = self.window
        if outcome.outputs:
            window.add(self.spec.sink, outcome.outputs, origin)
        if outcome.regroup and self.spec.regroup is not None:
            window.add(self.spec.regroup, outcome.regroup, origin)
        window.count(self.clock())
        return outcome

    def due(self, window_records: int, window_s: float) -> bool:
        """Whether the window is full or old enough to be flushed."""
        window = self.window
        if window.opened_at is None:
            return False
        return window.records >= window_records or self.clock() - window.opened_at >= window_s

    def drain(self) -> dict[str, list[Output]]:
        """What the window holds, per topic, unpacked (replay's outputs never leave the
        process); the window starts empty again."""
        return {topic: [item.output for item in held] for topic, held in self.window.take().items()}

    def flush(self) -> Flushed:
        """Pack what the window holds: one record per destination partition (split at the
        record limit); an output that fits in no record becomes a dead letter under the
        origin of the record that produced it."""
        flushed = Flushed()
        for topic, held in self.window.take().items():
            outputs = [item.output for item in held]
            packed = pack_outputs(outputs, self.partitions, self.max_record_bytes)
            flushed.records += [(topic, partition, value) for partition, value in packed.records]
            flushed.outputs[topic] = [o.value for o in outputs]
            if packed.oversized:
                origins = {id(item.output): item.origin for item in held}
                for output, size in packed.oversized:
                    flushed.outputs[topic].remove(output.value)
                    reason = (
                        f"output for key {output.key.decode(errors='replace')} is {size} bytes, "
                        f"over the record limit of {self.max_record_bytes} bytes"
                    )
                    raw = orjson.dumps(output.value)[:_PREVIEW_BYTES]
                    flushed.dead_letters.append(
                        DeadLetter(origins[id(output)], -1, reason[:_MAX_REASON_CHARS], raw)
                    )
        return flushed
