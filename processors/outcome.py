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

from producers.contract.deadletters import (
    RECORD_OVERHEAD_BYTES,
    DeadLetter,
    Origin,
    encode_dead_letter,
)

__all__ = [
    "RECORD_OVERHEAD_BYTES",
    "DeadLetter",
    "Lookup",
    "Origin",
    "Outcome",
    "Output",
    "encode_dead_letter",
    "load_record",
    "read_record",
]

# Reads one table value (a plain JSON-able dict) by key; None when absent.
Lookup = Callable[[str], dict[str, Any] | None]


class Output:
    """One value to emit downstream, routed by ``key`` (sent in batch records per partition).

    Not changed once made. A plain class rather than a dataclass: compiled (``setup.py``),
    its ``__init__`` is native code, where a dataclass's is generated Python that costs
    ten times as much, and several are made per event."""

    __slots__ = ("key", "value")

    def __init__(self, key: bytes, value: dict[str, Any]) -> None:
        self.key = key
        self.value = value

    def __repr__(self) -> str:
        return f"Output(key={self.key!r}, value={self.value!r})"


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
    JSON becomes one dead letter and yields nothing (see :func:`read_record`)."""
    return read_record(value, origin, outcome)[0]


def read_record(value: bytes, origin: Origin, outcome: Outcome) -> tuple[list[Any], bool]:
    """:func:`load_record`'s items, and whether orjson read them (else the standard library).

    A record that orjson refuses is read again with the standard library, which accepts the
    ``NaN`` and ``Infinity`` that Python's own ``json.dumps`` writes: then only the events
    holding them are dead-lettered (naming the field), not every valid event beside them.
    """
    try:
        decoded, by_orjson = orjson.loads(value), True
    except orjson.JSONDecodeError as exc:
        try:
            decoded, by_orjson = json.loads(value), False
        except (ValueError, RecursionError):
            reason = f"record is not valid JSON: {exc}"
            outcome.dead_letters.append(DeadLetter(origin, -1, reason, value))
            return [], False
    items = decoded if isinstance(decoded, list) else [decoded]
    outcome.inputs += len(items)
    return items, by_orjson
