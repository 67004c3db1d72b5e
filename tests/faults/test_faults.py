"""The pipeline under faults: during one run (24,000 events in the short form, 200,000 in
the long one) Faust workers and sinks are SIGKILLed at seeded random moments (workers come
back from their local state snapshots, taken every 2 s), the broker is restarted and
PostgreSQL is restarted; afterwards the tables equal the oracle (the pure
stages run sequentially over the same records): every row and column, the dead letters at
their exact origins, and the token and cost totals to the cent.

The test is the pipeline's supervisor: a killed process comes back after a random pause,
and one that exits on its own (a worker that lost the broker exits rather than commit a
failed send) is started again, as systemd or Kubernetes would. The services are the
test's own (``tests/faults/scratch.py``), since it stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from logflume.synthetic import generate_events, pack_events
from processors.codec import RECORD_OVERHEAD_BYTES
from tests.faults.conftest import FaultPlan
from tests.faults.scratch import ScratchServices, scratch_services
from tests.faults.settle import settle_at_oracle
from tests.integration.sinks.stream import Oracle, run_stages
from tests.processes import PipelineProcesses

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

log = logging.getLogger(__name__)

WORKERS = ("w1", "w2")
SINKS = ("s1", "s2")
PARTITIONS = 4
TOTALS = {"logs": ("tokens", "cost"), "traces": ("total_tokens", "cost")}


class Timeline:
    """What happened when (seconds since the start), printed with a failure."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.lines: list[str] = []

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.start:7.1f}s  {what}"
        self.lines.append(line)
        log.info("%s", line)

    def __str__(self) -> str:
        return "\n".join(self.lines)


async def _supervise(processes: PipelineProcesses, timeline: Timeline) -> None:
    """Restart what exited on its own, every half second."""
    while True:
        for name in processes.restart_exited():
            timeline.note(f"{name} had exited: restarted")
        await asyncio.sleep(0.5)


async def _kill_then_restart(
    processes: PipelineProcesses, name: str, pause_s: float, timeline: Timeline
) -> None:
    process = processes.kill(name)
    timeline.note(f"SIGKILL {name} (pid {process.pid}); back in {pause_s:.1f}s")
    await asyncio.sleep(pause_s)
    processes.restart(process)
    timeline.note(f"{name} restarted")


async def _fault(
    name: str,
    rng: random.Random,
    services: ScratchServices,
    processes: PipelineProcesses,
    timeline: Timeline,
    background: set[asyncio.Task[None]],
) -> bool:
    """Strike; False when there was nothing to strike (every one of a kind already down)."""
    if name in ("kill_worker", "kill_sink"):
        pool = WORKERS if name == "kill_worker" else SINKS
        alive = [n for n in pool if n in processes.running]
        if not alive:
            timeline.note(f"{name}: every one is already down, skipped")
            return False
        task = asyncio.create_task(
            _kill_then_restart(processes, rng.choice(alive), rng.uniform(0.5, 8.0), timeline)
        )
        background.add(task)
        task.add_done_callback(background.discard)
    elif name == "restart_kafka":
        timeline.note("broker: stopping")
        await services.restart_kafka(down_s=rng.uniform(1.0, 5.0))
        timeline.note("broker: back")
    elif name == "restart_postgres":
        timeline.note("postgres: stopping")
        await services.restart_postgres(down_s=rng.uniform(1.0, 8.0))
        timeline.note("postgres: back")
    else:
        raise AssertionError(f"unknown fault {name}")
    return True


def _schedule(plan: FaultPlan, rng: random.Random) -> dict[int, list[str]]:
    """Fault names by the chunk after which they strike (never after the last chunk, so
    that the stream still flows after every fault)."""
    schedule: dict[int, list[str]] = {}
    for fault in plan.faults:
        schedule.setdefault(rng.randrange(plan.chunks - 1), []).append(fault)
    return schedule


def _chunks(records: Sequence[tuple[int, bytes]], count: int) -> list[list[tuple[int, bytes]]]:
    size = -(-len(records) // count)
    return [list(records[i : i + size]) for i in range(0, len(records), size)]


async def _send(producer: AIOKafkaProducer, topic: str, chunk: list[tuple[int, bytes]]) -> None:
    """Send a chunk and wait for every acknowledgement (the idempotent producer keeps the
    per-partition order, so offsets are those the oracle counted)."""
    futures = [await producer.send(topic, value, partition=p) for p, value in chunk]
    await asyncio.gather(*futures)


def _oracle_totals(oracle: Oracle) -> dict[tuple[str, str], Any]:
    """Sum of each totals column over the oracle's final rows."""
    found: dict[tuple[str, str, str, str], Any] = {}
    for spec, value in oracle.kept():
        for column in TOTALS.get(spec.table, ()):
            if column in spec.names:
                item = spec.row(value)[spec.names.index(column)]
                found[(spec.table, column, value["project"], value["id"])] = item
    sums: dict[tuple[str, str], Any] = {}
    for (table, column, *_), item in found.items():
        if item is not None:
            total = sums.get((table, column), Decimal(0))
            sums[(table, column)] = total + Decimal(str(item))
    return sums


async def _stored_totals(conn: asyncpg.Connection) -> dict[tuple[str, str], Any]:
    sums: dict[tuple[str, str], Any] = {}
    for table, columns in TOTALS.items():
        for column in columns:
            value = await conn.fetchval(f'SELECT sum("{column}") FROM "{table}"', timeout=60)
            if value is not None:
                sums[(table, column)] = Decimal(value)
    return sums


async def test_kills_and_restarts_mid_stream_end_at_the_oracle(
    fault_plan: FaultPlan, tmp_path: Path
) -> None:
    rng = random.Random(fault_plan.seed)
    timeline = Timeline()
    events = generate_events(fault_plan.events, seed=fault_plan.seed)
    async with scratch_services(
        topic_prefix="faults",
        partitions=PARTITIONS,
        sink_group="faults-sink",
        sink_linger_ms=100,
        sink_retry_max_s=2.0,
    ) as services:
        settings = services.settings
        records = pack_events(events, settings.partitions, seed=fault_plan.seed)
        oracle = run_stages(settings, records, len(events)).oracle
        timeline.note(
            f"{fault_plan.form} form: {len(events)} events in {len(records)} records; "
            f"faults {fault_plan.faults}"
        )
        # Snapshots every 2 s, so that killed workers come back from theirs (and the tail
        # of the changelog after them) as well as from the whole changelog.
        snapshot_every = {"LOGFLUME_PROCESSOR_SNAPSHOT_INTERVAL_S": "2"}
        processes = PipelineProcesses(settings, tmp_path / "processes", snapshot_every)
        for name in WORKERS:
            processes.start_worker(name)
        for name in SINKS:
            processes.start_sink(name)
        supervisor = asyncio.create_task(_supervise(processes, timeline))
        background: set[asyncio.Task[None]] = set()
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=settings.max_record_bytes + RECORD_OVERHEAD_BYTES,
        )
        conn: asyncpg.Connection | None = None
        try:
            await producer.start()
            schedule = _schedule(fault_plan, rng)
            skipped_kills = 0
            for index, chunk in enumerate(_chunks(records, fault_plan.chunks)):
                await _send(producer, settings.topics.events, chunk)
                timeline.note(f"chunk {index}: {len(chunk)} records sent")
                for fault in schedule.get(index, []):
                    await asyncio.sleep(rng.uniform(0.0, 3.0))  # a random moment
                    if not await _fault(fault, rng, services, processes, timeline, background):
                        skipped_kills += 1
                await asyncio.sleep(rng.uniform(0.5, 2.0))
            await producer.stop()
            await asyncio.gather(*background)
            timeline.note("every record sent and every fault done; waiting for the oracle")

            conn = await settle_at_oracle(
                settings, oracle, processes, timeline, tmp_path / "processes" / "stacks.txt",
                timeout_s=fault_plan.settle_timeout_s,
            )  # fmt: skip
            timeline.note("tables equal the oracle")
            letters = await conn.fetchval("SELECT count(*) FROM dead_letters", timeout=60)
            assert letters == len(oracle.dead_letters) > 0
            stored, expected = await _stored_totals(conn), _oracle_totals(oracle)
            assert set(stored) == set(expected)
            for key, total in expected.items():
                assert stored[key].quantize(Decimal("0.01")) == total.quantize(Decimal("0.01")), key
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            for task in background:
                task.cancel()
            await producer.stop()
            if conn is not None:
                await conn.close()
            processes.stop_all()
    print(f"\n{timeline}\nkills {processes.kills}, restarts after exit "
          f"{processes.restarts_after_exit}")  # fmt: skip
    assert processes.kills + skipped_kills == sum(f.startswith("kill") for f in fault_plan.faults)
    snapshots = tmp_path / "processes" / "home" / "processors" / "snapshots"
    assert list(snapshots.glob("*entity_state-changelog/*.snap")), "no snapshot was written"
