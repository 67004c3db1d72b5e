"""The pipeline on a cluster of three Kafka brokers (replication 3, min.insync.replicas 2)
losing one of them: the broker that leads most partitions is SIGKILLed mid-stream and
restarted later, then all three are restarted one after the other (a rolling restart),
while records are published and an SDK client logs from a thread of its own. Two workers
and two sinks run throughout, restarted when they exit (a worker that loses a send exits
by design).

Afterwards the tables equal the oracle computed from everything the events topic holds,
every SDK event was delivered, and no SDK call waited on the cluster. The services are
the test's own (``tests/faults/scratch.py``), since it stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kernel.settings import Settings
from logflume.synthetic import generate_events, pack_events
from processors.codec import RECORD_OVERHEAD_BYTES
from producers.sdk import Client
from tests.faults.scratch import ScratchServices, scratch_services
from tests.faults.settle import settle_at_oracle
from tests.faults.test_faults import Timeline, _chunks, _send, _supervise
from tests.integration.sinks.harness import eventually
from tests.integration.sinks.stream import run_stages
from tests.processes import PipelineProcesses

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


@pytest.fixture(autouse=True)
def _on_request(request: pytest.FixtureRequest) -> None:
    """Three brokers, the pipeline and an SDK app take ~5 minutes on two cores: like the
    long fault form, this test runs when asked (``--cluster-faults`` or
    ``LOGFLUME_FAULTS=cluster``), not in every ``pytest`` run."""
    asked = request.config.getoption("--cluster-faults")
    if not asked and os.environ.get("LOGFLUME_FAULTS") != "cluster":
        pytest.skip("the three-broker test runs on request: --cluster-faults")


WORKERS = ("w1", "w2")
SINKS = ("s1", "s2")
PARTITIONS = 4
EVENTS = 12_000
CHUNKS = 12
SDK_RATE = 200  # calls/s from the app thread
# A call that waited on the cluster would take a request timeout (seconds); a call that
# only queues takes microseconds. The bound sits far from both.
SDK_CALL_BOUND_S = 0.5


class SdkApp:
    """An app thread logging through a module-level-style client at a steady rate,
    timing each call."""

    def __init__(self, settings: Settings, spool: Path) -> None:
        self.client = Client(
            bootstrap_servers=settings.bootstrap_servers,
            topic=settings.topics.events,
            project="cluster",
            spool_dir=spool,
        )
        self.calls = 0
        self.slowest_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdk-app", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.client.log(
                path="cluster/answer",
                messages=[{"role": "user", "content": f"question {self.calls}"}],
                output="an answer",
                prompt_tokens=10,
                output_tokens=3,
                reference_id=f"cluster-{self.calls}",
            )
            self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
            self.calls += 1
            self._stop.wait(1 / SDK_RATE)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


async def _leaders(settings: Settings) -> Counter[int]:
    """Partitions led per node, over the pipeline's topics and the changelogs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if not t.startswith("__")]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return Counter(p["leader"] for t in described for p in t["partitions"] if p["leader"] >= 0)


async def _fully_replicated(settings: Settings, timeout_s: float = 120.0) -> None:
    """Wait until every partition has all its replicas in sync again (what a rolling
    restart waits for before it takes down the next broker)."""

    async def in_sync() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_topics(await admin.list_topics())
        finally:
            await admin.close()
        return all(len(p["isr"]) == len(p["replicas"]) for t in described for p in t["partitions"])

    await eventually(in_sync, timeout_s=timeout_s, interval_s=1.0, what="all replicas in sync")


async def _read_events_topic(settings: Settings) -> list[tuple[int, bytes]]:
    """Every record of the events topic as ``(partition, value)``: each partition's records
    in offset order (the order its stage reads them), the partitions interleaved."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topics.events, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        by_partition: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, messages in batch.items():
                by_partition[tp.partition] += [m.value for m in messages if m.value is not None]
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        # Interleaved across partitions, as the stages read them.
        rounds = itertools.zip_longest(*(by_partition[p] for p in range(PARTITIONS)))
        return [(p, value) for row in rounds for p, value in enumerate(row) if value is not None]
    finally:
        await consumer.stop()


async def _strike(
    step: str, services: ScratchServices, timeline: Timeline, killed: list[int]
) -> None:
    settings = services.settings
    if step == "kill_leader":
        leaders = await _leaders(settings)
        node, led = leaders.most_common(1)[0]
        pid = services.kill_node(node)
        timeline.note(f"SIGKILL Kafka node {node} (pid {pid}), leader of {led} partitions")
        killed.append(node)
    elif step == "restart_killed":
        node = killed.pop()
        await services.start_node(node)
        timeline.note(f"Kafka node {node} restarted")
    elif step == "rolling_restart":
        for node in services.nodes:
            await _fully_replicated(settings)
            await asyncio.to_thread(node.stop)
            timeline.note(f"rolling restart: node {node.node} stopped")
            await asyncio.sleep(2.0)
            await services.start_node(node.node)
            timeline.note(f"rolling restart: node {node.node} back")
    else:
        raise AssertionError(step)


# After which chunk each step happens (the stream flows after every one of them).
SCHEDULE = {2: "kill_leader", 5: "restart_killed", 7: "rolling_restart"}


async def test_losing_a_broker_of_three_and_a_rolling_restart_end_at_the_oracle(
    tmp_path: Path,
) -> None:
    timeline = Timeline()
    # Near now: the SDK's events carry the wall clock, and the processors expire states by
    # event time (a stream months behind the SDK's would expire on the first sweep).
    start = datetime.now(UTC) - timedelta(minutes=30)
    events = generate_events(EVENTS, seed=31, start=start)
    async with scratch_services(
        kafka_brokers=3,
        topic_prefix="cluster",
        partitions=PARTITIONS,
        sink_group="cluster-sink",
        sink_linger_ms=100,
        sink_retry_max_s=2.0,
    ) as services:
        settings = services.settings
        records = pack_events(events, settings.partitions, seed=31)
        processes = PipelineProcesses(settings, tmp_path / "processes")
        for name in WORKERS:
            processes.start_worker(name)
        for name in SINKS:
            processes.start_sink(name)
        supervisor = asyncio.create_task(_supervise(processes, timeline))
        app = SdkApp(settings, tmp_path / "spool")
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=settings.max_record_bytes + RECORD_OVERHEAD_BYTES,
        )
        conn: asyncpg.Connection | None = None
        killed: list[int] = []
        try:
            await producer.start()
            app.start()
            for index, chunk in enumerate(_chunks(records, CHUNKS)):
                await _send(producer, settings.topics.events, chunk)
                timeline.note(f"chunk {index}: {len(chunk)} records sent")
                if index in SCHEDULE:
                    await _strike(SCHEDULE[index], services, timeline, killed)
                await asyncio.sleep(1.0)
            await producer.stop()
            app.stop()
            delivered = await asyncio.to_thread(app.client.flush, 120)
            stats = app.client.stats()
            timeline.note(f"SDK: {app.calls} calls, slowest {app.slowest_s * 1000:.1f} ms; {stats}")
            assert delivered, f"the SDK did not deliver everything: {stats}"
            assert stats.sent == stats.accepted == app.calls, stats
            assert not stats.dropped, stats
            assert app.slowest_s < SDK_CALL_BOUND_S, f"an SDK call took {app.slowest_s:.3f} s"

            oracle = run_stages(settings, await _read_events_topic(settings)).oracle
            started = time.monotonic()
            conn = await settle_at_oracle(
                settings, oracle, processes, timeline, tmp_path / "processes" / "stacks.txt",
                timeout_s=300, interval_s=2.0,
            )  # fmt: skip
            timeline.note(f"tables equal the oracle ({time.monotonic() - started:.0f} s after)")
            logs = await conn.fetchval(
                "SELECT count(*) FROM logs WHERE project = 'cluster'", timeout=60
            )
            assert logs == app.calls  # every SDK call is a log of its own reference id
        finally:
            app.stop()
            app.client.close(5)
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            await producer.stop()
            if conn is not None:
                await conn.close()
            processes.stop_all()
    print(f"\n{timeline}\nworker and sink restarts after exit: {processes.restarts_after_exit}")
