"""The assignor fix of ``processors/assignor.py``: an assignment made while the metadata
lacks a subscribed topic makes the leader ask for metadata until the topic is listed
(without it, the group waited up to 5 minutes for aiokafka's periodic refresh)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from faust.assignor.client_assignment import ClientAssignment, ClientMetadata

from processors import assignor
from processors.assignor import missing_topics, patch_faust_assignor, refresh_until_listed


class FakeCluster:
    """Cluster metadata listing ``partitions`` topics; ``appear`` lists more later."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = dict(partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self.partitions.get(topic)
        return set(range(count)) if count else None

    def topics(self, exclude_internal_topics: bool = True) -> set[str]:
        return set(self.partitions)


class FakeClient:
    """Forced metadata updates; the ``after``-th lists the ``late`` topics."""

    def __init__(self, cluster: FakeCluster, late: dict[str, int], after: int) -> None:
        self.cluster, self.late, self.after = cluster, late, after
        self.updates = 0

    def force_metadata_update(self) -> asyncio.Future[bool]:
        self.updates += 1
        if self.updates >= self.after:
            self.cluster.partitions.update(self.late)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.set_result(True)
        return future


def test_missing_topics_are_those_subscribed_without_partitions() -> None:
    cluster = FakeCluster({"a": 4, "b": 0})
    assert missing_topics(cluster, [["a", "b"], ["c"]]) == {"b", "c"}
    assert missing_topics(cluster, [["a"]]) == set()


async def test_refresh_asks_until_every_topic_is_listed() -> None:
    cluster = FakeCluster({"a": 4})
    client = FakeClient(cluster, {"b": 4, "c": 4}, after=3)
    listed = await refresh_until_listed(client, cluster, {"b", "c"}, interval_s=0.01)
    assert listed and client.updates == 3


async def test_refresh_gives_up_after_its_bound() -> None:
    cluster = FakeCluster({"a": 4})
    client = FakeClient(cluster, {"b": 4}, after=10**6)
    listed = await refresh_until_listed(client, cluster, {"b"}, interval_s=0.01, for_s=0.05)
    assert not listed and client.updates >= 2


def _member(topics: list[str]) -> ConsumerProtocolMemberMetadata:
    metadata = ClientMetadata(
        assignment=ClientAssignment(actives={}, standbys={}),
        url="http://worker:6066",
        changelog_distribution={},
    )
    return ConsumerProtocolMemberMetadata(0, topics, metadata.dumps())


async def test_an_assignment_without_a_subscribed_topic_asks_for_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's assignor on a leader whose metadata lacks topic ``b``: the assignment leaves
    ``b`` to nobody, and the patched assignor keeps asking until ``b`` is listed (the
    change that makes aiokafka rejoin). Unpatched, nothing asks: this fails."""
    patch_faust_assignor()
    cluster = FakeCluster({"a": 2})
    client = FakeClient(cluster, {"b": 2}, after=2)
    monkeypatch.setattr(assignor, "_client_of", lambda app: client)
    monkeypatch.setattr(assignor, "REFRESH_INTERVAL_S", 0.01)
    app = faust.App("assignor-test", broker="kafka://127.0.0.1:1")
    members = {"m1": _member(["a", "b"]), "m2": _member(["a", "b"])}

    assignment: Any = app.assignor.assign(cluster, members)

    assert set(assignment) == {"m1", "m2"}
    tasks = set(assignor._refreshing)
    assert tasks, "no metadata refresh was started for the missing topic"
    assert await asyncio.wait_for(asyncio.gather(*tasks), timeout=5) == [True]
    assert client.updates == 2
    assert missing_topics(cluster, [["a", "b"]]) == set()
