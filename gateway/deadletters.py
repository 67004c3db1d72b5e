"""The gateway's own dead letters: what a request sent that becomes no event, kept anyway.

A client's data is never answered 2xx and then dropped. What the gateway acknowledges but
cannot turn into a contract event (a Maxim line of an entity logflume does not model, or
one the contract refuses: :mod:`gateway.maxim`) is published on the pipeline's dead-letter
topic in the contract's dead-letter format
(:func:`producers.contract.deadletters.encode_dead_letter`: one JSON object per record with
origin, reason and the raw text), so the sink stores it in
``dead_letters`` like any other dead letter.

They get the events' promise: a :class:`~gateway.publisher.Publisher` of their own (a
transport that sends one record per dead letter, and a spool of their own) returns only
once Kafka acknowledged them or the spool has them on disk, and the request waits for it.
:attr:`DeadLetters.counts` counts them by labels (for Maxim lines: entity, action and
kind), read by ``logflume_gateway_maxim_dead_letters_total`` (:mod:`gateway.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from producers.contract.deadletters import DeadLetter, encode_dead_letter

from .publisher import Delivery, Publisher

__all__ = ["DeadLetters", "Kept"]


@dataclass(frozen=True, slots=True)
class Kept:
    """A dead letter and the labels it is counted under."""

    letter: DeadLetter
    labels: tuple[str, ...]


class DeadLetters:
    """Publishes dead letters on the dead-letter topic and counts the published ones."""

    def __init__(self, publisher: Publisher, max_record_bytes: int) -> None:
        self.publisher = publisher
        self.max_record_bytes = max_record_bytes
        self.counts: dict[tuple[str, ...], int] = {}

    async def publish(self, kept: Sequence[Kept]) -> Delivery:
        """Wait until Kafka acknowledged them or the spool has them (raises 503 / 413 as
        :meth:`Publisher.publish` does); then count them."""
        if not kept:
            return "sent"
        limit = self.max_record_bytes
        records = [((k.letter.event_id or "").encode(), encode_dead_letter(k.letter, limit))
                   for k in kept]  # fmt: skip
        delivery = await self.publisher.publish(records)
        for k in kept:
            self.counts[k.labels] = self.counts.get(k.labels, 0) + 1
        return delivery
