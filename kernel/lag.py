"""Consumer-group lag, read from the broker: how far each stage is behind its input.

Lag of a group on a topic = sum over partitions of (log end offset - committed offset),
where a partition the group never committed counts from the log start (the stages read
from ``earliest``). It is what the group has not yet *committed*, so it includes records
read but not yet acknowledged: lag 0 means every record up to now is processed for good.
Read from the broker, not from inside a stage, so the same number serves the demo's view,
the Prometheus gauges of every stage and an operator's ``kafka-consumer-groups``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from kernel.clients import kafka_admin, kafka_consumer
from kernel.settings import Settings

__all__ = ["GroupTopics", "LagMonitor", "LagReader", "pipeline_groups"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroupTopics:
    """A consumer group and the topics whose lag is reported under ``stage`` names."""

    group: str
    topics: Mapping[str, str]  # topic -> stage label


def pipeline_groups(settings: Settings) -> list[GroupTopics]:
    """The pipeline's groups: the Faust app (one group, a stage per source topic), the sinks."""
    t = settings.topics
    return [
        GroupTopics(
            settings.processors_group,
            {t.events: "entities", t.entities: "traces", t.groups: "groups"},
        ),
        GroupTopics(
            settings.sink_group, {t.entities: "sink", t.rollups: "sink", t.deadletter: "sink"}
        ),
    ]


class LagReader:
    """Reads lags with one admin client and one group-less consumer (for end offsets)."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self._partitions = settings.partitions
        ms = int(timeout_s * 1000)
        self._admin = kafka_admin(settings, request_timeout_ms=ms)
        self._consumer = kafka_consumer(
            settings,
            enable_auto_commit=False,
            request_timeout_ms=ms,
        )

    async def __aenter__(self) -> LagReader:
        await self._admin.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()
        await self._admin.close()

    def _tps(self, topics: Sequence[str]) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in topics for p in range(self._partitions)]

    async def end_offsets(self, topics: Sequence[str]) -> dict[str, int]:
        """Sum of the log end offsets per topic (records ever written, for rates)."""
        ends = await self._consumer.end_offsets(self._tps(topics))
        out = dict.fromkeys(topics, 0)
        for tp, offset in ends.items():
            out[tp.topic] += offset
        return out

    async def lag(self, group: str, topics: Sequence[str]) -> dict[str, int]:
        """Lag per topic of ``group`` (see the module docstring)."""
        tps = self._tps(topics)
        ends = await self._consumer.end_offsets(tps)
        starts = await self._consumer.beginning_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(group, partitions=tps)
        out = dict.fromkeys(topics, 0)
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            out[tp.topic] += max(0, ends[tp] - done)
        return out

    async def stage_lags(self, groups: Sequence[GroupTopics]) -> dict[str, int]:
        """Lag per stage label over the given groups."""
        out: dict[str, int] = {}
        for g in groups:
            for topic, lag in (await self.lag(g.group, list(g.topics))).items():
                stage = g.topics[topic]
                out[stage] = out.get(stage, 0) + lag
        return out


class LagMonitor:
    """A daemon thread that reads the lag of ``groups`` every ``interval_s`` and hands it to
    ``publish(group, topic, lag)``: a stage's own loop (Faust's, the sink's) is never
    slowed by the broker round trips, and a broker outage only delays the gauge."""

    def __init__(
        self,
        settings: Settings,
        groups: Sequence[GroupTopics],
        publish: Callable[[str, str, int], None],
        *,
        interval_s: float = 5.0,
    ) -> None:
        self._settings = settings
        self._groups = list(groups)
        self._publish = publish
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="logflume-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _main(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                async with LagReader(self._settings) as reader:
                    while not self._stop.is_set():
                        for g in self._groups:
                            for topic, lag in (await reader.lag(g.group, list(g.topics))).items():
                                self._publish(g.group, topic, lag)
                        await asyncio.to_thread(self._stop.wait, self._interval_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.info("consumer lag not available (%s); retrying", type(exc).__name__)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._stop.wait, self._interval_s)
