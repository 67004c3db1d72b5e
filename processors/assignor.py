"""A fix to faust-streaming's partition assignor: a topic the group subscribes to is never
left to nobody because the metadata in hand did not list it (issue 14's stall).

**The stall.** Right after a broker restart, a metadata response can carry an error for a
topic whose partitions have no leader yet. On a full metadata fetch (what Faust's consumer
does) aiokafka then leaves the topic out of its cluster view altogether. When the group
rebalances at that moment, Faust's assignor on the group leader logs "Ignoring missing
topic" and hands out an assignment without the topic: no worker consumes it. aiokafka
rejoins the group when the partition counts in its metadata change, but its next metadata
refresh comes only ``consumer_metadata_max_age_ms`` later (5 minutes by default): the
group sits idle with lag, with nothing logged but that warning, for up to 5 minutes.
Found by ``scripts/soak_faults.py`` (the fault suite's stall: "Ignoring missing topic"
for every pipeline topic in the leader's log, then nothing for 300 s).

**The fix.** When an assignment finds subscribed topics missing from the metadata, the
leader asks for fresh metadata every second until they are listed. Their appearance
changes aiokafka's metadata snapshot, which makes the group rejoin and assign them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = ["missing_topics", "patch_faust_assignor", "refresh_until_listed"]

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 1.0
REFRESH_FOR_S = 300.0  # then aiokafka's own periodic refresh takes over


class Cluster(Protocol):
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...


class MetadataClient(Protocol):
    def force_metadata_update(self) -> Any: ...


def missing_topics(cluster: Cluster, subscriptions: Iterable[Iterable[str]]) -> set[str]:
    """The topics some member subscribes to that the cluster metadata lists no partition of."""
    topics = {topic for subscription in subscriptions for topic in subscription}
    return {topic for topic in topics if not cluster.partitions_for_topic(topic)}


async def refresh_until_listed(
    client: MetadataClient,
    cluster: Cluster,
    topics: set[str],
    *,
    interval_s: float | None = None,
    for_s: float | None = None,
) -> bool:
    """Force metadata updates every ``interval_s`` until every topic in ``topics`` is listed
    (True) or ``for_s`` has passed (False)."""
    interval_s = REFRESH_INTERVAL_S if interval_s is None else interval_s
    deadline = time.monotonic() + (REFRESH_FOR_S if for_s is None else for_s)
    while missing_topics(cluster, [topics]):
        if time.monotonic() > deadline:
            return False
        try:
            await asyncio.wait_for(client.force_metadata_update(), timeout=10.0)
        except Exception as exc:  # a broker still away: ask again
            log.debug("metadata update failed: %r", exc)
        await asyncio.sleep(interval_s)
    return True


_refreshing: set[asyncio.Task[bool]] = set()


def _client_of(app: Any) -> MetadataClient | None:
    """The aiokafka client of the app's consumer (None before it exists)."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    return getattr(consumer, "_client", None)


def patch_faust_assignor() -> None:
    """Install the fix on Faust's ``PartitionAssignor`` (idempotent)."""
    from faust.assignor.partition_assignor import PartitionAssignor

    cls: Any = PartitionAssignor
    if getattr(cls, "_logflume_patched", False):
        return
    assign = cls.assign

    def assign_and_watch(self: Any, cluster: Any, member_metadata: Mapping[str, Any]) -> Any:
        missing = missing_topics(cluster, (m.subscription for m in member_metadata.values()))
        client = _client_of(self.app) if missing else None
        if missing and client is not None and not _refreshing:
            log.warning(
                "the group's assignment leaves out %s (not in the metadata yet); asking for "
                "metadata until they are listed, then the group rejoins",
                ", ".join(sorted(missing)),
            )
            task = asyncio.ensure_future(refresh_until_listed(client, cluster, missing))
            _refreshing.add(task)
            task.add_done_callback(_refreshing.discard)
        return assign(self, cluster, member_metadata)

    cls.assign = assign_and_watch
    cls._logflume_patched = True
