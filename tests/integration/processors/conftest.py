"""Real processor workers (subprocesses, stand-in reducers) against a real broker.

Each test gets its own topic prefix (so its own topics, consumer group and changelogs) and
a :class:`Workers` pool whose processes are SIGKILLed at the end (and by the tests that
simulate a crash). Workers log to files in the test's tmp_path; a failing test prints them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from kernel.settings import Settings
from kernel.topics import ensure_topics
from processors.app import app_id
from producers.contract import pack_record, partition_for
from tests.offsets import group_offsets
from tests.services import REPO_ROOT, Services

PARTITIONS = 4
STANDIN_WORKER = "tests.integration.processors.worker_main"
# The broker's group.min.session.timeout.ms is 6 s: the fastest a SIGKILLed member is noticed.
WORKER_ENV = {
    "LOGFLUME_PROCESSOR_SESSION_TIMEOUT_S": "6",
    "LOGFLUME_PROCESSOR_HEARTBEAT_INTERVAL_S": "1",
    "LOGFLUME_PROCESSOR_REBALANCE_TIMEOUT_S": "20",
    "LOGFLUME_PROCESSOR_COMMIT_INTERVAL_S": "1",
    "LOGFLUME_PROCESSOR_LOG_LEVEL": "info",
}


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Workers:
    """Worker subprocesses of one test."""

    settings: Settings
    tmp: Path
    running: dict[str, Worker] = field(default_factory=dict)

    def start(
        self, name: str, stages: str = "entities,traces,groups", *, real: bool = False, **env: str
    ) -> Worker:
        """Start a worker with the stand-in reducers (``real``: the real ones)."""
        log = self.tmp / f"worker-{name}.log"
        environ = {
            **os.environ,
            **WORKER_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "LOGFLUME_TOPIC_PREFIX": self.settings.topic_prefix,
            "LOGFLUME_PARTITIONS": str(self.settings.partitions),
            "LOGFLUME_HOME": str(self.tmp / "home"),
            "LOGFLUME_PROCESSOR_WORKER_NAME": name,
            **env,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "processors.worker" if real else STANDIN_WORKER,
                    "--stages",
                    stages,
                ],
                cwd=REPO_ROOT,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(name, process, log)
        self.running[name] = worker
        return worker

    def kill(self, name: str) -> float:
        """SIGKILL one worker (no goodbye to the group); the monotonic time of the kill."""
        worker = self.running.pop(name)
        worker.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        worker.process.wait(timeout=10)
        return killed_at

    def kill_all(self) -> None:
        for name in list(self.running):
            self.kill(name)

    async def dump_stacks(self) -> None:
        """Ask every running worker for the stacks of its threads and tasks (mode's
        worker answers SIGUSR1 with them, into its log), for a failed test to show."""
        for worker in self.running.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1.0)

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}"
            for log in sorted(self.tmp.glob("worker-*.log"))
        )


@pytest.fixture
def settings(services: Services) -> Settings:
    prefix = f"it-proc-{uuid.uuid4().hex[:10]}"
    return services.settings(topic_prefix=prefix, partitions=PARTITIONS)


@pytest_asyncio.fixture(loop_scope="session")
async def workers(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Workers]:
    await ensure_topics(settings)
    pool = Workers(settings, tmp_path)
    try:
        yield pool
    finally:
        failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
        if failed:  # what each worker was doing, and how far each source partition got
            await pool.dump_stacks()
            print(await group_progress(settings))
        pool.kill_all()
        if failed:
            print(pool.logs())  # and keep the topics to look at
            print(f"kept the topics of {settings.topic_prefix}; worker logs in {tmp_path}")
        else:
            await delete_topics(settings)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        names = [
            t
            for t in await admin.list_topics()
            if t.startswith((f"{settings.topic_prefix}.", app_id(settings)))
        ]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def event(event_id: str, entity: str, trace: str, ts: float | None = None, **extra: Any) -> dict:
    return {
        "event_id": event_id,
        "project": "p",
        "ts": time.time() if ts is None else ts,
        "body": {"id": entity, "trace_id": trace},
        **extra,
    }


async def produce_events(
    settings: Settings, events: Iterable[dict], per_record: int = 100
) -> list[tuple[int, int]]:
    """Pack events into records per partition (by ``project/entity``); (partition, offset)s."""
    grouped: dict[int, list[bytes]] = {}
    for item in events:
        key = f"{item['project']}/{item['body']['id']}".encode()
        grouped.setdefault(partition_for(key, settings.partitions), []).append(orjson.dumps(item))
    records = [
        (p, pack_record(evs[i : i + per_record]))
        for p, evs in grouped.items()
        for i in range(0, len(evs), per_record)
    ]
    return await produce_records(settings, records)


async def produce_records(
    settings: Settings, records: list[tuple[int, bytes]]
) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topics.events, value, partition=p) for p, value in records
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in sent]


@dataclass
class Consumed:
    """Records of one topic: (partition, offset, key, decoded value), when each was seen."""

    records: list[tuple[int, int, bytes | None, Any]] = field(default_factory=list)
    seen_at: list[float] = field(default_factory=list)

    def items(self) -> list[dict]:
        return [i for *_, v in self.records for i in (v if isinstance(v, list) else [v])]

    def event_ids(self, kind: str | None = None) -> set[str]:
        return {i["event_id"] for i in self.items() if kind is None or i.get("kind") == kind}

    def has_rollups_of(self, ids: set[str]) -> bool:
        """Both rollup kinds (trace, group) seen for every id."""
        return ids <= self.event_ids("trace") and ids <= self.event_ids("group")


async def consume(
    settings: Settings,
    topic: str,
    until: Callable[[Consumed], bool],
    timeout_s: float = 40.0,
    into: Consumed | None = None,
) -> Consumed:
    """Read ``topic`` from the beginning until ``until`` holds (else TimeoutError)."""
    consumed = into or Consumed()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        consumed.records.clear()
        consumed.seen_at.clear()
        async with asyncio.timeout(timeout_s):
            while not until(consumed):
                for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                    now = time.monotonic()
                    for r in batch:
                        value = orjson.loads(r.value) if r.value is not None else None
                        consumed.records.append((tp.partition, r.offset, r.key, value))
                        consumed.seen_at.append(now)
    finally:
        await consumer.stop()
    return consumed


async def partition_counts(settings: Settings) -> dict[str, int]:
    """Partitions of the topics the workers made: changelogs and the groups topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(app_id(settings))]
        names.append(f"{settings.topic_prefix}.groups")
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def group_assignments(settings: Settings) -> dict[str, set[tuple[str, int]]]:
    """Client id -> assigned (topic, partition)s of the processors' consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([app_id(settings)])
    finally:
        await admin.close()
    (group,) = response.to_object()["groups"]
    found: dict[str, set[tuple[str, int]]] = {}
    for member in group["members"]:
        raw = member["member_assignment"]
        tps: set[tuple[str, int]] = set()
        if raw:
            assignment = ConsumerProtocolMemberAssignment.decode(raw)
            tps = {(topic, p) for topic, parts in assignment.assignment for p in parts}
        found[member["client_id"]] = tps
    return found


async def group_progress(settings: Settings) -> str:
    """Per source partition of the stages: its owner in the processors' group, the group's
    committed offset and the log end (a failed test prints it: which stage and partition
    stopped, and whether a worker still held it)."""
    group = app_id(settings)
    sources = (settings.topics.events, settings.topics.entities, settings.topics.groups)
    tps = [TopicPartition(t, p) for t in sources for p in range(settings.partitions)]
    try:
        offsets = await group_offsets(settings, group, tps)
        owners = {
            tp: client for client, held in (await group_assignments(settings)).items()
            for tp in held
        }  # fmt: skip
    except Exception as exc:  # diagnostics only: never hide the test's own failure
        return f"group progress of {group}: unavailable ({type(exc).__name__}: {exc})"
    lines = [f"group progress of {group} (topic:partition committed/end owner):"]
    for tp, (done, end) in offsets.items():
        owner = owners.get((tp.topic, tp.partition), "nobody")
        lines.append(f"  {tp.topic}:{tp.partition} {done}/{end} {owner}")
    return "\n".join(lines)


async def wait_for_assignment(
    settings: Settings, workers: Iterable[str], timeout_s: float = 40.0
) -> dict[str, set[tuple[str, int]]]:
    """Wait until exactly ``workers`` share every partition of the events topic."""
    wanted = {f"{app_id(settings)}-{name}" for name in workers}
    events = settings.topics.events
    async with asyncio.timeout(timeout_s):
        while True:
            found = await group_assignments(settings)
            owned = [tp for tps in found.values() for tp in tps if tp[0] == events]
            if (
                set(found) == wanted
                and sorted(p for _, p in owned) == list(range(settings.partitions))
                and all(any(t == events for t, _ in tps) for tps in found.values())
            ):
                return found
            await asyncio.sleep(0.5)
