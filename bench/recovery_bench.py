"""How long a restarted worker takes to process again, against the size of its state.

    python bench/recovery_bench.py [--states 300000] [--state-bytes 800] [--save FILE]

Needs the services (``logflume up``, or ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``).
Fresh topics and database. The stage-1 changelog is filled with ``--states`` live entity
states of ``--state-bytes`` each (what a worker recovers after a soak: its active set), then
one worker (all three stages) and a sink start, and a log is sent to every partition. It
prints the seconds from the worker's start until every probe is stored, and the changelog
records recovered per second; then, in the same run, the seconds until it processes again
after a SIGKILL and a restart: with dynamic group membership, and with static membership
(``LOGFLUME_PROCESSOR_STATIC_MEMBERSHIP``, KIP-345: the restarted worker takes its partitions
back without waiting for the group to notice that the killed one is gone). The soak bench
measures the same after a real soak; this one isolates recovery so that its cost can be
compared across changes in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

# The process helpers live with the tests: the repository's root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel.settings import Settings
from processors.app import app_id
from processors.worker import prepare_topics
from producers.sdk import Client
from tests.processes import PipelineProcesses
from tests.services import Services, base_settings, scratch_environment


def state(n: int, size: int, now: float) -> dict[str, Any]:
    """A stage-1 log state of about ``size`` bytes (its shape does not matter to recovery)."""
    return {
        "kind": "log",
        "project": "rec",
        "created": True,
        "save": True,
        "last_ts": now,
        "seen": [[now, f"evt-{n}"]],
        "imm": {"id": [f"log-{n}", now, f"evt-{n}"]},
        "mut": {"pad": ["x" * max(0, size - 160), now, f"evt-{n}"]},
    }


async def fill(settings: Settings, states: int, size: int) -> None:
    topic = f"{app_id(settings)}-entity_state-changelog"
    await prepare_topics(settings, [topic])
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    now = time.time()
    try:
        for n in range(states):
            key = f"log:rec/log-{n}".encode()
            await producer.send(
                topic, orjson.dumps(state(n, size, now)), key=key, partition=n % settings.partitions
            )
        await producer.flush()
    finally:
        await producer.stop()


async def probe(client: Client, conn: asyncpg.Connection, partitions: int, timeout: float) -> float:
    """Send a log to every partition; seconds until all are stored."""
    began = time.monotonic()
    refs = [f"probe-{uuid.uuid4().hex[:8]}-{n}" for n in range(4 * partitions)]
    for ref in refs:
        client.log(path="rec/probe", output="probe", reference_id=ref)
    client.flush(30)
    while time.monotonic() - began < timeout:
        found = await conn.fetchval("SELECT count(*) FROM logs WHERE reference_id = ANY($1)", refs)
        if found == len(refs):
            return time.monotonic() - began
        await asyncio.sleep(0.25)
    return float("inf")


def snapshots(folder: Path) -> int:
    """Stage 1's partitions that have a snapshot."""
    return len(list(folder.glob("*entity_state-changelog/*.snap")))


async def wait_snapshots(
    client: Client, conn: asyncpg.Connection, folder: Path, partitions: int, timeout: float
) -> bool:
    """Keep the worker busy until every partition of stage 1 has a snapshot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if snapshots(folder) >= partitions:
            return True
        await probe(client, conn, partitions, 60)
        await asyncio.sleep(1)
    return False


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = base_settings()
    tag = uuid.uuid4().hex[:8]
    services = Services(env.bootstrap_servers, env.dsn)
    async with scratch_environment(
        services, f"lf_rec_{tag}", topic_prefix=f"lf-rec-{tag}", sink_group=f"lf-rec-{tag}-sink"
    ) as settings:
        began = time.monotonic()
        await fill(settings, args.states, args.state_bytes)
        print(f"changelog filled: {args.states:,} states in {time.monotonic() - began:.0f} s")
        tmp = Path(tempfile.mkdtemp(prefix="lf-rec-"))
        environment = {
            "LOGFLUME_PROCESSOR_LOG_LEVEL": "info",
            "LOGFLUME_PROCESSOR_SNAPSHOT_INTERVAL_S": str(args.snapshot_interval_s),
        }
        processes = PipelineProcesses(settings, tmp, dict(environment))
        processes.start_sink("rec-s")
        conn = await asyncpg.connect(settings.dsn, timeout=30)
        client = Client(
            bootstrap_servers=settings.bootstrap_servers,
            topic=settings.topics.events,
            project="rec",
            spool_dir=tmp / "spool",
        )
        folder = tmp / "home" / "processors" / "snapshots"
        try:
            started = time.monotonic()
            worker = processes.start_worker("rec-w")
            await probe(client, conn, settings.partitions, args.timeout)
            cold_s = time.monotonic() - started
            print(f"  cold start (whole changelog): processing after {cold_s:.1f} s")
            warm_s = static_s = float("inf")
            if args.snapshot_interval_s and await wait_snapshots(
                client, conn, folder, settings.partitions, args.timeout
            ):
                processes.kill(worker.name)
                started = time.monotonic()
                worker = processes.restart(worker)
                await probe(client, conn, settings.partitions, args.timeout)
                warm_s = time.monotonic() - started
                print(f"  restart after SIGKILL (snapshots): processing after {warm_s:.1f} s")
                # The same worker as a static member: one restart to join as such, then
                # the restart that is measured.
                processes.kill(worker.name)
                assert isinstance(processes.extra_env, dict)
                processes.extra_env["LOGFLUME_PROCESSOR_STATIC_MEMBERSHIP"] = "true"
                worker = processes.restart(worker)
                await probe(client, conn, settings.partitions, args.timeout)
                await asyncio.sleep(args.snapshot_interval_s + 2)  # fresh snapshots, as above
                if await wait_snapshots(client, conn, folder, settings.partitions, args.timeout):
                    processes.kill(worker.name)
                    started = time.monotonic()
                    worker = processes.restart(worker)
                    await probe(client, conn, settings.partitions, args.timeout)
                    static_s = time.monotonic() - started
                    print(
                        f"  restart after SIGKILL (snapshots, static membership): processing "
                        f"after {static_s:.1f} s"
                    )
        finally:
            client.close(10)
            await conn.close()
            processes.stop_all()
    return {
        "states": args.states,
        "state_bytes": args.state_bytes,
        "cold_s": cold_s,
        "cold_states_per_s": args.states / cold_s,
        "restart_s": warm_s,
        "static_restart_s": static_s,
        "logs": str(tmp),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=300_000)
    parser.add_argument("--state-bytes", type=int, default=800)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--snapshot-interval-s",
        type=float,
        default=10.0,
        help="LOGFLUME_PROCESSOR_SNAPSHOT_INTERVAL_S of the worker (0: no snapshots)",
    )
    parser.add_argument("--save", type=Path, help="write the result as JSON here")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(
        f"{report['states']:,} states of {report['state_bytes']} bytes: a new worker processes "
        f"after {report['cold_s']:.1f} s ({report['cold_states_per_s']:,.0f} states/s from the "
        f"changelog); restarted after SIGKILL with its snapshots, after "
        f"{report['restart_s']:.1f} s, and as a static member after "
        f"{report['static_restart_s']:.1f} s; logs in {report['logs']}"
    )
    if args.save:
        args.save.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
