"""Which part of the raw topic a command reads: ``--from`` / ``--until`` / ``--since``
parsed, then turned into offsets per partition.

Times select raw *records* by their Kafka timestamp (the time the producer published
them; ``logflume import`` sets it to the newest event time of the record), through the
broker's time index (``offsets_for_times``). The end offsets are snapshotted when the
command starts, so it terminates even while producers keep writing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from kernel.clients import kafka_admin

__all__ = ["EARLIEST", "Window", "parse_time", "resolve_window", "topic_partitions"]

EARLIEST = "earliest"


def parse_time(text: str, option: str) -> datetime | None:
    """``earliest`` -> None; an ISO 8601 time with a timezone (``Z`` allowed) -> datetime.

    Raises ``ValueError`` naming the option: a time without a timezone is refused rather
    than guessed (the server's and the operator's local times differ)."""
    value = text.strip()
    if value.lower() == EARLIEST:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{option}: {text!r} is not 'earliest' or an ISO 8601 time such as 2026-03-02T09:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{option}: {text!r} has no timezone; add Z or an offset like +01:00")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """Offsets ``[start, end)`` to read per partition of one topic."""

    topic: str
    start: dict[int, int]
    end: dict[int, int]

    @property
    def records(self) -> int:
        """Records in the window (an upper bound when the topic was compacted)."""
        return sum(max(0, self.end[p] - self.start[p]) for p in self.start)

    def remaining(self, positions: dict[int, int]) -> int:
        """Records still to read, given the next offset to read per partition."""
        return sum(max(0, self.end[p] - positions.get(p, self.start[p])) for p in self.start)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def topic_partitions(bootstrap_servers: str, topic: str) -> list[int]:
    """The partitions of ``topic``; ValueError when it does not exist. (The consumer's own
    ``partitions_for_topic`` only knows topics it has fetched metadata for.)"""
    admin = kafka_admin(bootstrap_servers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [p["partition"] for p in described.get("partitions") or ()]
    if described.get("error_code") or not partitions:
        raise ValueError(f"topic {topic} does not exist (run `logflume up`)")
    return partitions


async def resolve_window(
    consumer: AIOKafkaConsumer,
    bootstrap_servers: str,
    topic: str,
    since: datetime | None,
    until: datetime | None,
) -> Window:
    """The offsets of ``[since, until)`` in every partition of ``topic`` (started consumer)."""
    if since is not None and until is not None and until <= since:
        raise ValueError("--until must be later than --from/--since")
    partitions = await topic_partitions(bootstrap_servers, topic)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    beginning = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)  # the snapshot that makes the command terminate

    async def at(moment: datetime | None, default: dict[TopicPartition, int]) -> dict[int, int]:
        if moment is None:
            return {tp.partition: default[tp] for tp in tps}
        found = await consumer.offsets_for_times({tp: _ms(moment) for tp in tps})
        # No record at or after the time: the partition's (snapshotted) end.
        return {
            tp.partition: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in tps
        }

    start = await at(since, beginning)
    stop = await at(until, end)
    stop = {p: min(stop[p], end[TopicPartition(topic, p)]) for p in stop}
    return Window(topic, start, stop)
