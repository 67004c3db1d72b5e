"""One sink batch: the stage outputs of many Kafka records, coalesced per row.

Within a batch only the highest version of each row is kept (a row may appear once per
statement, and only the newest state matters; it takes over the payload values only an
older one carried), and every record's offset is tracked so that the consumer commits
exactly what the database has stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from producers.contract import merge_carried
from producers.contract.deadletters import DeadLetter

from .tables import TableSpec, spec_for

__all__ = ["Batch", "DeadLetterRow", "PromptRow"]


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    topic: str
    partition: int
    offset: int
    index: int
    event_id: str | None
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class PromptRow:
    project: str
    prompt_id: str
    path: str | None
    version_id: str
    prompt: dict[str, Any]
    environment: str | None


@dataclass(slots=True)
class Batch:
    """Rows to write, keyed per table spec and (project, id); offsets to commit after."""

    rows: dict[TableSpec, dict[tuple[str, ...], dict[str, Any]]] = field(default_factory=dict)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    prompts: dict[tuple[str, str], PromptRow] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to read
    # Where each kept row came from (topic, partition, offset, index in the record): a row
    # PostgreSQL refuses is dead-lettered under this origin, unique and stable on redelivery.
    origins: dict[tuple[TableSpec, tuple[str, ...]], tuple[str, int, int, int]] = field(
        default_factory=dict
    )
    records: int = 0
    values: int = 0

    def __len__(self) -> int:
        return self.values

    def add_value(
        self, role: str, value: dict[str, Any], origin: tuple[str, int, int, int] | None = None
    ) -> bool:
        """Add one stage output (read at ``origin``); False when no table takes its kind."""
        spec = spec_for(role, value)
        if spec is None:
            return False
        self.values += 1
        table = self.rows.setdefault(spec, {})
        key = spec.key(value)
        current = table.get(key)
        if current is None or current["version"] < value["version"]:
            if current is not None and spec.payload:
                value = merge_carried(current, value)  # what only the older one carried
            table[key] = value
            if origin is not None:
                self.origins[(spec, key)] = origin
        # A log names a prompt version only with a version id: a Flow's log that also holds
        # prompt details (a later create merged into an earlier flow create) has none, and a
        # prompt version row without one failed the whole batch, again on every restart.
        if (
            spec.table == "logs"
            and value.get("prompt")
            and value.get("prompt_id")
            and value.get("version_id")
        ):
            self._add_prompt(value)
        return True

    def _add_prompt(self, log: dict[str, Any]) -> None:
        key = (log["project"], log["version_id"])
        if key not in self.prompts:
            self.prompts[key] = PromptRow(
                log["project"],
                log["prompt_id"],
                log.get("path"),
                log["version_id"],
                log["prompt"],
                log.get("environment"),
            )

    def add_dead_letter(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        """A dead-letter record (``producers.contract.stage_records.DeadLetterRecord``)."""
        try:
            letter = DeadLetter.from_json(orjson.loads(value))
            row = DeadLetterRow(
                letter.origin.topic,
                letter.origin.partition,
                letter.origin.offset,
                letter.index,
                letter.event_id,
                letter.reason,
                letter.raw,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            reason = f"bad dead letter: {exc}"
            row = DeadLetterRow(topic, partition, offset, -1, None, reason, value)
        self.dead_letters.append(row)
        self.values += 1

    def track(self, topic: str, partition: int, offset: int) -> None:
        self.records += 1
        self.offsets[(topic, partition)] = offset + 1
