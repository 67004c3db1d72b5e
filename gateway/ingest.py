"""From request objects to accepted events: envelope, contract validation, publishing.

Every route builds plain envelopes (``{event_id, type, ts, project, body}``) and hands them
here. Each envelope is serialized once with orjson and those exact bytes are validated by
the wire contract (:func:`producers.contract.parse_event`, which also enforces the size
limit), so what travels to Kafka is what was checked, and every rejection names its field
and reason. Accepted events go to the :class:`~gateway.publisher.Publisher`; the call
returns once they are acknowledged by Kafka or durably spooled. The events of a
``save=false`` log are published without their payload fields (:mod:`gateway.unsaved`).

:class:`AcceptedLogs` remembers (bounded in count and age) the logs accepted by this
process, so that ``GET /logs/{id}`` answers ``pending`` rather than 404 until the pipeline
has stored them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from producers.contract import ContractError, Event, FieldError, parse_event, routing_key
from producers.sdk.encoding import Encoded, new_id
from producers.sdk.recent import Recent

from .errors import PayloadTooLarge, ValidationFailed
from .publisher import Delivery, Publisher
from .unsaved import UnsavedIndex, screen

__all__ = ["AcceptedLogs", "Ingest", "Outcome", "encode_envelope", "envelope", "now_iso"]


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


def encode_envelope(item: Any, max_event_bytes: int) -> tuple[Event, Encoded]:
    """The validated event and its ``(routing key, bytes)``; raises ContractError."""
    try:
        raw = orjson.dumps(item)
    except orjson.JSONEncodeError as exc:  # nested deeper than orjson writes (254 levels)
        error = FieldError("body", f"cannot be encoded as JSON ({exc})")
        raise ContractError([error]) from None
    event = parse_event(raw, max_bytes=max_event_bytes)
    return event, (routing_key(event), raw)


class AcceptedLogs:
    """Ids of logs this process accepted recently: (project, log id) -> reference id."""

    def __init__(self, capacity: int, ttl_s: float) -> None:
        self._ids: Recent[tuple[str, str], tuple[str | None]] = Recent(capacity, ttl_s)
        self._refs: Recent[tuple[str, str], str] = Recent(capacity, ttl_s)

    def add(self, project: str, log_id: str | None, reference_id: str | None) -> None:
        if log_id is None:
            return
        self._ids.put((project, log_id), (reference_id,))
        if reference_id is not None:
            self._refs.put((project, reference_id), log_id)

    def get(self, project: str, log_id: str) -> tuple[str | None] | None:
        """``(reference_id,)`` when ``log_id`` was accepted lately, else None."""
        return self._ids.get((project, log_id))

    def log_for_reference(self, project: str, reference_id: str) -> str | None:
        return self._refs.get((project, reference_id))

    def forget(self, project: str, log_id: str | None, reference_id: str | None) -> None:
        """A deleted log is no longer ``pending``."""
        if log_id is not None:
            self._ids.pop((project, log_id))
        if reference_id is not None:
            self._refs.pop((project, reference_id))

    def __len__(self) -> int:
        return len(self._ids)


class Ingest:
    """Validates envelopes against the contract and publishes the accepted ones."""

    def __init__(
        self,
        publisher: Publisher,
        accepted: AcceptedLogs,
        max_event_bytes: int,
        unsaved: UnsavedIndex,
    ) -> None:
        self.publisher = publisher
        self.accepted = accepted
        self.max_event_bytes = max_event_bytes
        self.unsaved = unsaved

    def encode(self, item: Any) -> tuple[Event, Encoded]:
        """The validated event and its ``(routing key, bytes)``; raises ContractError."""
        return encode_envelope(item, self.max_event_bytes)

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
        """Publish the events, without the payload fields of save=false logs
        (:func:`gateway.unsaved.screen`)."""
        encoded = await screen(self.unsaved, encoded)
        delivery = await self.publisher.publish([data for _, data in encoded])
        for event, _ in encoded:
            if event.type == "log":
                self.accepted.add(event.project, event.body.id, event.body.reference_id)
        return delivery
