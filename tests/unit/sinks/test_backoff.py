"""While PostgreSQL is down the sink polls paused partitions; a rebalance hands it a fresh,
unpaused assignment, and nothing a poll returns then may be dropped (no network)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from kernel.settings import Settings
from sinks.consumer import Sink


@dataclass
class _Record:
    offset: int


@dataclass
class FakeConsumer:
    """Two partitions; the first poll comes right after a rebalance (nothing paused)."""

    assigned: set[TopicPartition]
    paused_now: set[TopicPartition] = field(default_factory=set)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    polls: int = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_now |= set(partitions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def getmany(self, *partitions: Any, timeout_ms: int = 0) -> Any:
        self.polls += 1
        if self.polls == 1:
            # The rebalance happened during this poll: records of the new assignment came
            # back although the sink had paused the old one.
            self.paused_now.clear()
            return {
                tp: [_Record(40 + tp.partition), _Record(41 + tp.partition)]
                for tp in sorted(self.assigned)
            }
        return {tp: [] for tp in self.assigned - self.paused_now}


async def test_backoff_pauses_the_assignment_and_seeks_back_over_what_a_poll_returned() -> None:
    tps = {TopicPartition("e", 0), TopicPartition("e", 1)}
    consumer = FakeConsumer(tps)
    sink = Sink(
        Settings(topic_prefix="u", sink_retry_max_s=0.05, kafka_bootstrap_servers="127.0.0.1:1")
    )
    await sink._backoff(consumer, delay_s=0.05)  # type: ignore[arg-type]
    assert consumer.polls >= 2
    assert consumer.paused_now == tps  # paused again after the rebalance
    assert sorted(consumer.seeks) == [(TopicPartition("e", 0), 40), (TopicPartition("e", 1), 41)]
