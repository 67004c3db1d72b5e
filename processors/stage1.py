"""Stage 1, entity merge: one raw-topic record in, coalesced state writes and canonical
entities out. Pure: no Faust, no Kafka (the agent around it stays a dozen lines).

A record is a JSON array of events (``producers.contract.records``). The fast path
validates the whole array in one ``validate_json`` call; when that fails, each event is
validated alone so that only the bad ones become dead letters, each with its reason and
origin, and every valid event around them is merged. Every entity the record touches
is re-emitted, duplicates included (at-least-once, made idempotent downstream by the
entity's ``version``). Payload values travel only in the output of the version that
brought them, never in the state, so a stage writes its state only after its outputs are
acknowledged by Kafka (``processors.agents``): a crash between the two re-merges the
record and sends the payload again, instead of finding it already merged and gone.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from producers.contract import ContractError, Event, validate_event
from producers.contract.keys import project_key

from .entities import canonical_entity, to_change
from .merge import apply_change
from .outcome import DeadLetter, Lookup, Origin, Outcome, Output, load_record
from .text import NUL_ESCAPE
from .unsaved import private_event, private_record, unsaved_event

__all__ = ["entity_output_key", "merge_events", "process_events_record"]

_RECORD = TypeAdapter(list[Event])
# Levels an event's values gain in its entity's state (state -> "mut" -> field -> entry).
_STATE_HEADROOM = 4


def _nested(item: Any, levels: int) -> Any:
    for _ in range(levels):
        item = [item]
    return item


def _parse(
    value: bytes, origin: Origin, max_event_bytes: int, outcome: Outcome, lookup: Lookup
) -> tuple[list[Event], list[dict[str, Any]]]:
    """The valid events of a record and their bodies as decoded from the wire; the invalid
    events are appended as dead letters (without the payload of a save=false log, whose
    state ``lookup`` reads: :mod:`processors.unsaved`)."""
    if len(value) <= max_event_bytes and value[:1] == b"[":
        try:  # validate_json also refuses JSON nested deeper than ~200 levels
            events = _RECORD.validate_json(value)
            items = orjson.loads(value)
            return events, [item["body"] for item in items]
        except (ValidationError, orjson.JSONDecodeError):
            pass  # find which events are bad, one by one
    items = load_record(value, origin, outcome)
    events: list[Event] = []
    bodies: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        event_id = item.get("event_id") if isinstance(item, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        try:
            raw = orjson.dumps(item)
            # The entity's state nests the event's values a few levels deeper, and it must
            # still encode (orjson writes at most 254 levels) on the changelog and downstream.
            orjson.dumps(_nested(item, _STATE_HEADROOM))
        except orjson.JSONEncodeError as exc:
            reason = f"body: cannot be encoded as JSON ({exc})"
            kept = private_record(value, lookup)[:4096]
            outcome.dead_letters.append(DeadLetter(origin, index, reason, kept, event_id))
            continue
        if len(raw) > max_event_bytes:
            reason = f"event: is {len(raw)} bytes, over the limit of {max_event_bytes} bytes"
            kept = _private_raw(item, raw, lookup)[:4096]
            outcome.dead_letters.append(DeadLetter(origin, index, reason, kept, event_id))
            continue
        try:
            events.append(validate_event(item))
        except ContractError as exc:
            kept = _private_raw(item, raw, lookup)
            outcome.dead_letters.append(DeadLetter(origin, index, str(exc), kept, event_id))
            continue
        bodies.append(item["body"])
    return events, bodies


def _private_raw(item: Any, raw: bytes, lookup: Lookup) -> bytes:
    return orjson.dumps(private_event(item, lookup)) if unsaved_event(item, lookup) else raw


def entity_output_key(entity: dict[str, Any]) -> bytes:
    """Canonical entities are keyed by trace, so stage 2 finds a whole trace on one partition."""
    root = (
        entity.get("trace_root")
        or entity.get("reference_id")
        or entity.get("log_id")
        or entity.get("session_id")
    )
    return project_key(entity["project"], root or entity["id"]).encode()


def merge_events(
    events: list[Event],
    lookup: Lookup,
    outcome: Outcome,
    *,
    scrub: bool = False,
    raw_bodies: list[dict[str, Any]] | None = None,
) -> None:
    """Merge events into their entities' states; one write and one output per entity.

    ``raw_bodies``: the events' bodies as decoded from the wire (a faster source of the
    carried fields than the models, see :func:`processors.entities.carried_fields`)."""
    states: dict[str, dict[str, Any] | None] = {}
    carried: dict[str, dict[str, Any]] = {}  # per entity: the payload values that won
    for index, event in enumerate(events):
        raw_body = raw_bodies[index] if raw_bodies is not None else None
        key, change = to_change(event, scrub=scrub, raw_body=raw_body)
        state = states[key] if key in states else lookup(key)
        merged = apply_change(state, change, carried.setdefault(key, {}))
        if merged is None:
            outcome.duplicates += 1
            states.setdefault(key, state)
            continue
        states[key] = merged
        outcome.writes[key] = merged
    for key, state in states.items():
        if state is None:
            continue
        entity = canonical_entity(key, state, carried.get(key))
        if entity is None:
            continue
        if entity.get("cost_source") == "unknown":
            outcome.unpriced += 1
        outcome.outputs.append(Output(entity_output_key(entity), entity))


def process_events_record(
    value: bytes, origin: Origin, lookup: Lookup, *, max_event_bytes: int
) -> Outcome:
    outcome = Outcome()
    events, bodies = _parse(value, origin, max_event_bytes, outcome, lookup)
    merge_events(events, lookup, outcome, scrub=NUL_ESCAPE in value, raw_bodies=bodies)
    return outcome
