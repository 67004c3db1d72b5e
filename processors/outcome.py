"""What processing one Kafka record yields: the pure stages return this, the Faust agents
act on it (write the table values, send the outputs, send the dead letters).

The pure functions never touch Faust or Kafka, so they are tested alone and reused by the
test oracle, the benchmark and replay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "RECORD_OVERHEAD_BYTES",
    "DeadLetter",
    "Lookup",
    "Origin",
    "Outcome",
    "Output",
    "encode_dead_letter",
    "load_record",
]

# Room left under the record limit for the record's key, headers and batch framing.
RECORD_OVERHEAD_BYTES = 1024
# A dead letter keeps at most this much of the raw record when the whole would not fit.
_DEAD_LETTER_RAW_KEEP = 64 * 1024

# Reads one table value (a plain JSON-able dict) by key; None when absent.
Lookup = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from; dead letters name it."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event (or a whole record) that could not be parsed or validated."""

    origin: Origin
    index: int  # position of the event in its record; -1 when the record itself is bad
    reason: str
    raw: bytes
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.origin.topic,
            "partition": self.origin.partition,
            "offset": self.origin.offset,
            "index": self.index,
            "event_id": self.event_id,
            "reason": self.reason,
            "raw": self.raw.decode("utf-8", errors="replace"),
        }


def encode_dead_letter(dead_letter: DeadLetter, max_bytes: int) -> bytes:
    """The dead-letter record value (one JSON object per record, as the sink reads it); the
    raw bytes are cut (and flagged) if it would not fit. Every writer of the dead-letter
    topic uses it: the processors, replay and the gateway."""
    data = dead_letter.to_json()
    encoded = orjson.dumps(data)
    if len(encoded) <= max_bytes - RECORD_OVERHEAD_BYTES:
        return encoded
    raw = dead_letter.raw[:_DEAD_LETTER_RAW_KEEP]
    data["raw"] = raw.decode("utf-8", errors="replace")
    data["raw_truncated"] = True
    data["raw_bytes"] = len(dead_letter.raw)
    return orjson.dumps(data)


@dataclass(frozen=True, slots=True)
class Output:
    """One value to emit downstream, routed by ``key`` (sent in batch records per partition)."""

    key: bytes
    value: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """Table writes (coalesced: one per key touched by the record), outputs, dead letters."""

    writes: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    regroup: list[Output] = field(default_factory=list)  # to the groups topic (stage 2 only)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    unpriced: int = 0  # events of a model the price table does not know
    inputs: int = 0  # values the record held (events, entities, contributions)


def load_record(value: bytes, origin: Origin, outcome: Outcome) -> list[Any]:
    """The items of a record holding a JSON array (or one object); a record that is not
    JSON becomes one dead letter and yields nothing.

    A record that orjson refuses is read again with the standard library, which accepts the
    ``NaN`` and ``Infinity`` that Python's own ``json.dumps`` writes: then only the events
    holding them are dead-lettered (naming the field), not every valid event beside them.
    """
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            reason = f"record is not valid JSON: {exc}"
            outcome.dead_letters.append(DeadLetter(origin, -1, reason, value))
            return []
    items = decoded if isinstance(decoded, list) else [decoded]
    outcome.inputs += len(items)
    return items
