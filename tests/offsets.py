"""How far a consumer group got: its committed offsets and the log ends, from the broker
(the tests' and the fault suites' lag checks and failure reports)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kernel.settings import Settings

__all__ = ["GroupOffsets", "group_offsets"]

GroupOffsets = dict[TopicPartition, tuple[int | None, int]]
"""Per partition: ``(committed offset or None, log end offset)``."""


async def group_offsets(
    settings: Settings,
    group: str,
    partitions: Iterable[TopicPartition] | Callable[[TopicPartition], bool],
) -> GroupOffsets:
    """``group``'s committed offset and the log end of each of ``partitions`` (or of the
    partitions it committed that the predicate keeps)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(group)
        if callable(partitions):
            tps = [tp for tp in committed if partitions(tp)]
        else:
            tps = list(partitions)
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
        await admin.close()
    return {tp: (committed[tp].offset if tp in committed else None, ends[tp]) for tp in tps}
