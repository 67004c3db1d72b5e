"""Dead-letter records: an event (or a whole record) that could not be parsed, validated
or stored, with the reason and the raw bytes, written to the pipeline's dead-letter topic by
the processors, replay and the gateway, and stored by the sink in ``dead_letters``."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from .stage_records import DeadLetterRecord

__all__ = ["RECORD_OVERHEAD_BYTES", "DeadLetter", "Origin", "encode_dead_letter"]

# Room left under the record limit for the record's key, headers and batch framing.
RECORD_OVERHEAD_BYTES = 1024
# A dead letter keeps at most this much of the raw record when the whole would not fit.
_DEAD_LETTER_RAW_KEEP = 64 * 1024


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

    @classmethod
    def from_json(cls, data: DeadLetterRecord) -> DeadLetter:
        """The dead letter a record of the dead-letter topic holds (KeyError, TypeError or
        ValueError when it is not one)."""
        origin = Origin(str(data["topic"]), int(data["partition"]), int(data["offset"]))
        event_id = data.get("event_id")
        return cls(
            origin,
            int(data.get("index", -1)),
            str(data["reason"]),
            str(data.get("raw", "")).encode(),
            event_id if isinstance(event_id, str) else None,
        )

    def to_json(self) -> DeadLetterRecord:
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
