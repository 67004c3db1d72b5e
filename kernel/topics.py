"""Talking to any Kafka broker (local or external): is it answering, and the pipeline's topics.

``ensure_topics`` creates the topics of architecture section 3 with the configured partition
count and replication (retention of the raw events topic from the settings) and checks that
topics which already exist have the expected partition count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from kernel.clients import kafka_admin
from kernel.errors import ServiceError
from kernel.settings import Settings

__all__ = [
    "INDEX_BYTES",
    "TopicsReport",
    "ensure_topics",
    "kafka_answers",
    "min_insync_replicas",
    "replication",
    "wait_for_kafka",
]

log = logging.getLogger(__name__)

_RETRIES = 10  # a broker that just started may briefly answer with retriable errors


@dataclass(slots=True)
class TopicsReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


async def ensure_topics(
    settings: Settings,
    *,
    extra: Mapping[str, Mapping[str, str]] | None = None,
    timeout_s: float = 60.0,
) -> TopicsReport:
    """Create the pipeline's topics that are missing (and the ``extra`` ones, with their own
    configs: the processors' changelogs); verify the partition count of all. Every topic
    gets :func:`replication` replicas and :func:`min_insync_replicas`."""
    extra = dict(extra or {})
    wanted = [
        *settings.topics.all(),
        *(name for name in extra if name not in settings.topics.all()),
    ]
    admin = kafka_admin(settings, request_timeout_ms=int(timeout_s * 1000))
    deadline = time.monotonic() + timeout_s
    try:
        await admin.start()
        while True:
            try:
                return await _ensure(admin, settings, wanted, extra, timeout_s)
            except KafkaError as exc:
                # aiokafka's admin client asks one node, picked at random, per request: one
                # that is down (a cluster losing a broker) is worth asking another.
                if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                    raise
                log.info("retrying topic checks after %r", exc)
                await asyncio.sleep(1.0)
    except KafkaError as exc:
        raise ServiceError(
            f"Kafka at {settings.bootstrap_servers} failed while ensuring topics: {exc!r}"
        ) from exc
    finally:
        await admin.close()


async def _ensure(
    admin: AIOKafkaAdminClient,
    settings: Settings,
    wanted: list[str],
    extra: Mapping[str, Mapping[str, str]],
    timeout_s: float,
) -> TopicsReport:
    report = TopicsReport()
    live = None  # the cluster is asked only when its size decides (external, no setting)
    if settings.kafka_is_external and not settings.replication_factor:
        live = len((await admin.describe_cluster())["brokers"])
    replicas = replication(settings, live)
    for attempt in range(_RETRIES):
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            break
        new_topics = [
            NewTopic(
                name=name,
                num_partitions=settings.partitions,
                replication_factor=replicas,
                topic_configs={
                    **_topic_configs(settings, name),
                    "min.insync.replicas": str(min_insync_replicas(replicas)),
                    **extra.get(name, {}),
                },
            )
            for name in missing
        ]
        response = await admin.create_topics(new_topics, timeout_ms=int(timeout_s * 1000))
        retriable = _created(response, report)
        if not retriable:
            break
        log.info("retrying topic creation (%s): %s", attempt + 1, ", ".join(retriable))
        await asyncio.sleep(0.5 * (attempt + 1))
    else:
        raise ServiceError(f"could not create the Kafka topics {', '.join(wanted)}")
    report.existing = [t for t in wanted if t not in report.created]
    await _verify_partitions(admin, wanted, settings.partitions)
    if report.created:
        log.info("created topics: %s", ", ".join(report.created))
    return report


def replication(settings: Settings, live_brokers: int | None) -> int:
    """Replicas of a new topic: the setting, else 3 when the cluster has 3 brokers or more
    (one broker may be lost), else every broker. The local cluster's size is known; an
    external cluster's is the brokers alive now (set LOGFLUME_REPLICATION_FACTOR there, so
    that a topic created while a broker is down is not created with fewer replicas)."""
    if settings.replication_factor:
        return settings.replication_factor
    if settings.kafka_is_external and live_brokers is not None:
        return min(3, live_brokers)
    return min(3, settings.local_brokers)


def min_insync_replicas(replicas: int) -> int:
    """Acknowledgements an ``acks=all`` write needs: 2 of 3 replicas, so that a broker may
    be lost without losing an acknowledged record or refusing writes."""
    return 2 if replicas >= 3 else 1


# The size each index file of a new segment is created with (Kafka's default: 10 MiB). Kafka
# creates it sparse and maps it into memory; the first write to a page of it is a page
# fault whose readahead fills up to ``read_ahead_kb`` of the file with zeros, 8 MiB on this
# machine: up to 8 MiB zeroed per index file per new segment, in the broker's request
# threads (16% of its CPU samples in a slow run of bench/pipeline_bench.py, perf). 1 MiB
# still holds 87,381 time-index entries, an entry per 4 KiB of records (Kafka's
# index.interval.bytes): a segment rolls at ~340 MiB at the latest instead of 1 GiB, and
# the changelogs' 64 MiB segments are unaffected.
INDEX_BYTES = 1024 * 1024


def _topic_configs(settings: Settings, name: str) -> dict[str, str]:
    # A record carries a batch of events: let it be larger than the largest single event,
    # on external brokers too (the topic setting overrides the broker default).
    configs = {
        "max.message.bytes": str(settings.max_record_bytes),
        "segment.index.bytes": str(INDEX_BYTES),
    }
    if name == settings.topics.events:
        configs["retention.ms"] = str(settings.events_retention_ms)
    return configs


def _created(response: Any, report: TopicsReport) -> list[str]:
    """Record the created topics; raise on fatal errors; return the retriable ones."""
    retriable: list[str] = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 and entry[2] else ""
        if code == 0:
            report.created.append(name)
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            continue  # created concurrently by another process: fine
        if getattr(error, "retriable", False):
            retriable.append(name)
            continue
        raise ServiceError(f"could not create topic {name!r}: {error.__name__} {message}".strip())
    return retriable


async def _verify_partitions(admin: AIOKafkaAdminClient, names: list[str], expected: int) -> None:
    # Right after creation the broker's metadata may not list a topic yet: ask again for a
    # while before calling it an error.
    deadline = time.monotonic() + 15.0
    while True:
        described = await admin.describe_topics(names)
        unknown = [t for t in described if t["error_code"] == UnknownTopicOrPartitionError.errno]
        if not unknown or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    wrong: list[str] = []
    for topic in described:
        if topic["error_code"]:
            error = for_code(topic["error_code"])
            raise ServiceError(f"could not describe topic {topic['topic']!r}: {error.__name__}")
        count = len(topic["partitions"])
        if count != expected:
            wrong.append(f"{topic['topic']} has {count}")
    if wrong:
        raise ServiceError(
            f"existing topics do not have the expected {expected} partitions ({'; '.join(wrong)}); "
            "set LOGFLUME_PARTITIONS to match, or delete and recreate the topics "
            "(partitions decide event ordering, so logflume never changes them itself)"
        )


async def kafka_answers(bootstrap_servers: str, timeout_s: float = 5.0) -> bool:
    """True when a broker at ``bootstrap_servers`` answers a metadata request."""
    hosts = [h.strip() for h in bootstrap_servers.split(",") if h.strip()]
    if not any([await _tcp_open(h, timeout_s) for h in hosts]):
        return False  # Skip aiokafka while nothing listens: it logs every refused connection.
    admin = kafka_admin(bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


async def wait_for_kafka(bootstrap_servers: str, timeout_s: float) -> None:
    """Wait until a broker answers, else :class:`ServiceError`."""
    deadline = time.monotonic() + timeout_s
    while not await kafka_answers(bootstrap_servers, timeout_s=min(5.0, timeout_s)):
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"Kafka at {bootstrap_servers} did not answer within {timeout_s:.0f}s"
            )
        await asyncio.sleep(1.0)


async def _tcp_open(host_port: str, timeout_s: float) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        async with asyncio.timeout(timeout_s):
            _reader, writer = await asyncio.open_connection(
                host.strip("[]") or "127.0.0.1", int(port)
            )
    except (OSError, ValueError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True
