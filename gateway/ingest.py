"""From request objects to accepted events: envelope, contract validation, publishing.

Every route builds plain envelopes (``{event_id, type, ts, project, body}``) and hands them
here. Each envelope is serialized once with orjson and those exact bytes are validated by
the wire contract (:func:`producers.contract.parse_event`, which also enforces the size
limit), so what travels to Kafka is what was checked, and every rejection names its field
and reason. Accepted events go to the :class:`~gateway.publisher.Publisher`; the call
returns once they are acknowledged by Kafka or durably spooled.

:class:`AcceptedLogs` remembers (bounded in count and age) the logs accepted by this
process, so that ``GET /logs/{id}`` answers ``pending`` rather than 404 until the pipeline
has stored them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from producers.contract import ContractError, Event, FieldError, parse_event, routing_key
from producers.sdk.encoding import Encoded, new_id

from .errors import PayloadTooLarge, ValidationFailed
from .publisher import Delivery, Publisher

__all__ = ["AcceptedLogs", "Ingest", "Outcome", "envelope", "now_iso"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def envelope(etype: str, project: str, body: dict[str, Any]) -> dict[str, Any]:
    """A new event (fresh ``event_id``, ``ts`` now) around ``body``."""
    return {"event_id": new_id("evt_"), "type": etype, "ts": now_iso(), "project": project,
            "body": body}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict on one event of a batch: accepted (with its event) or its errors."""

    index: int
    event_id: str | None
    event: Event | None = None
    errors: tuple[FieldError, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.event is not None


class AcceptedLogs:
    """Ids of logs this process accepted recently: (project, log id) -> reference id."""

    def __init__(self, capacity: int, ttl_s: float) -> None:
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._ids: OrderedDict[tuple[str, str], tuple[float, str | None]] = OrderedDict()
        self._refs: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()

    def add(self, project: str, log_id: str | None, reference_id: str | None) -> None:
        if self._capacity <= 0:
            return
        now = time.monotonic()
        if log_id is not None:
            _put(self._ids, (project, log_id), (now, reference_id), self._capacity)
        if reference_id is not None and log_id is not None:
            _put(self._refs, (project, reference_id), (now, log_id), self._capacity)

    def get(self, project: str, log_id: str) -> tuple[str | None] | None:
        """``(reference_id,)`` when ``log_id`` was accepted lately, else None."""
        entry = self._ids.get((project, log_id))
        if entry is None or time.monotonic() - entry[0] > self._ttl_s:
            return None
        return (entry[1],)

    def log_for_reference(self, project: str, reference_id: str) -> str | None:
        entry = self._refs.get((project, reference_id))
        if entry is None or time.monotonic() - entry[0] > self._ttl_s:
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._ids)


def _put(store: OrderedDict[Any, Any], key: Any, value: Any, capacity: int) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > capacity:
        store.popitem(last=False)


class Ingest:
    """Validates envelopes against the contract and publishes the accepted ones."""

    def __init__(self, publisher: Publisher, accepted: AcceptedLogs, max_event_bytes: int) -> None:
        self.publisher = publisher
        self.accepted = accepted
        self.max_event_bytes = max_event_bytes

    def encode(self, item: Any) -> tuple[Event, Encoded]:
        """The validated event and its ``(routing key, bytes)``; raises ContractError."""
        try:
            raw = orjson.dumps(item)
        except orjson.JSONEncodeError as exc:  # nested deeper than orjson writes (254 levels)
            error = FieldError("body", f"cannot be encoded as JSON ({exc})")
            raise ContractError([error]) from None
        event = parse_event(raw, max_bytes=self.max_event_bytes)
        return event, (routing_key(event), raw)

    def check(
        self,
        items: Sequence[Any],
        where: Sequence[str | int] = (),
        renames: Mapping[str, str] | None = None,
    ) -> list[tuple[Event, Encoded]]:
        """All or nothing: every event valid, else 422 naming each field (413 when the only
        problem is an event over the size limit). ``where`` locates the events in the
        request; ``renames`` maps contract fields back to the caller's names."""
        encoded: list[tuple[Event, Encoded]] = []
        for index, item in enumerate(items):
            at = [*where, index] if len(items) > 1 else list(where)
            try:
                encoded.append(self.encode(item))
            except ContractError as exc:
                if exc.fields == ("event",):
                    raise PayloadTooLarge(str(exc)) from None
                errors = [FieldError((renames or {}).get(e.field, e.field), e.reason)
                          for e in exc.errors]  # fmt: skip
                raise ValidationFailed(errors, at) from None
        return encoded

    async def accept_all(
        self, items: Sequence[Any], renames: Mapping[str, str] | None = None
    ) -> list[Event]:
        """Validate every event (422 / 413 on the first bad one), then publish them all."""
        encoded = self.check(items, renames=renames)
        await self.publish(encoded)
        return [event for event, _ in encoded]

    async def accept_each(self, items: Sequence[Any]) -> tuple[list[Outcome], Delivery | None]:
        """Per event: the valid ones are published together, the others rejected."""
        outcomes: list[Outcome] = []
        valid: list[tuple[Event, Encoded]] = []
        for index, item in enumerate(items):
            event_id = item.get("event_id") if isinstance(item, dict) else None
            event_id = event_id if isinstance(event_id, str) else None
            try:
                event, encoded = self.encode(item)
            except ContractError as exc:
                outcomes.append(Outcome(index, event_id, errors=exc.errors))
                continue
            valid.append((event, encoded))
            outcomes.append(Outcome(index, event.event_id, event=event))
        delivery = await self.publish(valid) if valid else None
        return outcomes, delivery

    async def publish(self, encoded: Sequence[tuple[Event, Encoded]]) -> Delivery:
        delivery = await self.publisher.publish([data for _, data in encoded])
        for event, _ in encoded:
            if event.type == "log":
                self.accepted.add(event.project, event.body.id, event.body.reference_id)
        return delivery
