"""Stage 1, entity merge: one raw-topic record in, coalesced state writes and canonical
entities out. Pure: no Faust, no Kafka (the agent around it stays a dozen lines).

A record is a JSON array of events (``producers.contract.records``). The fast path checks
the whole array with the contract's msgspec mirror (``producers.contract.mirror``: never
looser than the contract, ~2x cheaper than its models), then with the contract's models in
one ``validate_json`` call; when both refuse, each event is validated alone so that only
the bad ones become dead letters, each with its reason and origin, and every valid event
around them is merged. Either way the merge runs on plain data
(:class:`processors.entities.PlainEvent`). Every entity the record touches is re-emitted,
duplicates included (at-least-once, made idempotent downstream by the entity's
``version``). Payload values travel only in the output of the version that brought them,
never in the state, so a stage writes its state only after its outputs are acknowledged by
Kafka (``processors.agents``): a crash between the two re-merges the record and sends the
payload again, instead of finding it already merged and gone.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from producers.contract import ContractError, Event, validate_event
from producers.contract.keys import project_key
from producers.contract.mirror import fast_record

from .entities import PlainEvent, canonical_entity, plain_event, to_change, wire_event
from .merge import apply_change
from .outcome import DeadLetter, Lookup, Origin, Outcome, Output, read_record
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
) -> list[PlainEvent]:
    """The valid events of a record as plain data; the invalid events are appended as dead
    letters (without the payload of a save=false log, whose state ``lookup`` reads:
    :mod:`processors.unsaved`).

    Three ways, cheapest first: the contract's msgspec mirror accepts the whole record
    (:func:`producers.contract.mirror.fast_record`, never looser than the contract); the
    contract's models accept the whole record; else each event alone, the mirror then the
    contract, so that only the bad ones become dead letters."""
    if len(value) <= max_event_bytes and value[:1] == b"[":
        fast = fast_record(value)
        if fast is not None:
            try:  # (orjson refuses what msgspec may take, such as an escaped lone surrogate)
                items = orjson.loads(value)
            except orjson.JSONDecodeError:
                items = None
            if items is not None and _shallow(value, items):
                outcome.inputs += len(items)
                return [wire_event(it, *found) for it, found in zip(items, fast, strict=True)]
        # A record the mirror refused may still be valid whole (a type it does not cover, a
        # stricter rule of its own): the contract's verdict over the original bytes, as
        # before the mirror (one by one, each event is re-encoded: sizes and number forms
        # may differ).
        try:  # validate_json also refuses JSON nested deeper than ~200 levels
            events = _RECORD.validate_json(value)
            items = orjson.loads(value)
            outcome.inputs += len(items)
            return [plain_event(e, it["body"]) for e, it in zip(events, items, strict=True)]
        except (ValidationError, orjson.JSONDecodeError):
            pass  # find which events are bad, one by one
    # orjson writes NaN and the infinities (which only the standard library's reading of a
    # record lets in) as null, so the mirror may judge an event's re-encoding only when
    # orjson itself read the record; else the contract judges the decoded values.
    items, mirrored = read_record(value, origin, outcome)
    plain: list[PlainEvent] = []
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
        found = fast_record(b"[%b]" % raw) if mirrored else None  # most events are good
        if found is not None:
            plain.append(wire_event(item, *found[0]))
            continue
        try:
            event = validate_event(item)
        except ContractError as exc:
            kept = _private_raw(item, raw, lookup)
            outcome.dead_letters.append(DeadLetter(origin, index, str(exc), kept, event_id))
            continue
        plain.append(plain_event(event, item["body"]))
    return plain


# Below this many brackets a record cannot nest deep enough to matter (see _shallow).
_SHALLOW_BRACKETS = 200


def _shallow(value: bytes, items: list[Any]) -> bool:
    """Whether every event of the record (``items``, decoded), nested a few levels deeper in
    its entity's state, still encodes (orjson writes at most 254 levels; the contract's
    ``validate_json`` refuses ~200, the mirror has no limit of its own). Counting brackets
    bounds the depth cheaply."""
    if value.count(b"[") + value.count(b"{") < _SHALLOW_BRACKETS:
        return True
    try:
        orjson.dumps(_nested(items, _STATE_HEADROOM))
    except orjson.JSONEncodeError:
        return False
    return True


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
    events: list[PlainEvent], lookup: Lookup, outcome: Outcome, *, scrub: bool = False
) -> None:
    """Merge events into their entities' states; one write and one output per entity."""
    states: dict[str, dict[str, Any] | None] = {}
    carried: dict[str, dict[str, Any]] = {}  # per entity: the payload values that won
    for event in events:
        key, change = to_change(event, scrub=scrub)
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
    events = _parse(value, origin, max_event_bytes, outcome, lookup)
    merge_events(events, lookup, outcome, scrub=NUL_ESCAPE in value)
    return outcome
