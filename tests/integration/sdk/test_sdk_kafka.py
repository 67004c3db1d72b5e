"""The SDK against a real Apache Kafka: volume, a broker outage, a SIGKILLed process.

Run with ``-s`` to see the figures each test prints.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from logflume.services.kafka import LocalKafka
from producers.contract import parse_event, partition_for, routing_key
from producers.sdk import Client

from .conftest import PARTITIONS, consume, percentile

pytestmark = pytest.mark.integration


def make_client(bootstrap: str, topic: str, spool: Path, **overrides: object) -> Client:
    return Client(
        bootstrap_servers=bootstrap,
        topic=topic,
        project="sdk-it",
        spool_dir=spool,
        **overrides,
    )


def test_100k_events_from_four_threads_and_an_asyncio_task_all_arrive(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    client = make_client(kafka_bootstrap, topic, tmp_path / "spool")
    per_source = 20_000
    log_ids: list[list[str]] = []
    start = time.perf_counter()

    def emit_thread(worker: int) -> None:
        ids = [
            client.log(
                reference_id=f"t{worker}-{i}",
                messages=[{"role": "user", "content": f"question {i}"}],
                output=f"answer {i}",
                prompt_tokens=12,
                output_tokens=3,
            )
            for i in range(per_source)
        ]
        log_ids.append(ids)

    async def emit_task() -> None:
        ids = []
        for i in range(per_source):
            trace = client.trace(name=f"trace {i}")
            ids.append(trace.id)
            if i % 500 == 0:
                await asyncio.sleep(0)  # a real task yields to its loop
        log_ids.append(ids)

    threads = [threading.Thread(target=emit_thread, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(emit_task())
    for thread in threads:
        thread.join()
    emitted_s = time.perf_counter() - start
    assert client.flush(120), client.stats()
    delivered_s = time.perf_counter() - start
    stats = client.stats()
    client.close(10)

    expected = {i for ids in log_ids for i in ids}
    assert len(expected) == 5 * per_source
    events = consume(kafka_bootstrap, topic, expected=len(expected))
    found = {e["body"]["id"] for e in events}  # type: ignore[index]
    missing = expected - found
    assert not missing, f"{len(missing)} events missing"
    assert stats.dropped_total == 0
    for event in events[:2000]:  # records are routed as the contract says
        parsed = parse_event(__import__("orjson").dumps(event))
        assert 0 <= partition_for(routing_key(parsed), PARTITIONS) < PARTITIONS
    print(
        f"\n100k: emitted in {emitted_s:.2f}s, all acknowledged after {delivered_s:.2f}s "
        f"({len(expected) / delivered_s:,.0f} events/s); distinct in Kafka {len(found)}, "
        f"records read {len(events)} events; spooled {stats.spooled}, "
        f"resent {stats.resent_from_spool}, dropped {dict(stats.dropped)}"
    )


def test_broker_outage_of_30s_calls_stay_fast_and_every_event_arrives(
    kafka_bootstrap: str, topic: str, tmp_path: Path, local_kafka: LocalKafka
) -> None:
    client = make_client(kafka_bootstrap, topic, tmp_path / "spool", send_timeout_s=5.0)
    phase = {"name": "before"}
    samples: dict[str, list[float]] = {"before": [], "outage": [], "after": []}
    ids: list[str] = []
    stop = threading.Event()
    rate = 2000  # events per second, in bursts of 20 every 10 ms

    def emitter() -> None:
        clock = time.perf_counter
        i = 0
        while not stop.is_set():
            burst_start = clock()
            for _ in range(20):
                t0 = clock()
                log_id = client.log(reference_id=f"o-{i}", output=f"answer {i}", prompt_tokens=5)
                samples[phase["name"]].append(clock() - t0)
                ids.append(log_id)
                i += 1
            time.sleep(max(0.0, 20 / rate - (clock() - burst_start)))

    thread = threading.Thread(target=emitter)
    thread.start()
    try:
        time.sleep(3)
        phase["name"] = "outage"
        down_at = time.monotonic()
        assert local_kafka.stop() is not None
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        pid = local_kafka.start()
        asyncio.run(local_kafka.wait_until_ready(pid))
        outage_s = time.monotonic() - down_at
        phase["name"] = "after"
        time.sleep(3)
    finally:
        stop.set()
        thread.join()
        if not local_kafka.is_running():
            pid = local_kafka.start()
            asyncio.run(local_kafka.wait_until_ready(pid))
    spooled_during = client.stats().spooled
    flush_start = time.monotonic()
    assert client.flush(180), client.stats()
    catch_up_s = time.monotonic() - flush_start
    stats = client.stats()
    client.close(10)

    events = consume(kafka_bootstrap, topic, expected=len(ids))
    found = {e["body"]["id"] for e in events}  # type: ignore[index]
    missing = set(ids) - found
    outage_p99_ms = percentile(samples["outage"], 0.99) * 1000
    print(
        f"\noutage: {len(ids)} events, broker away {outage_s:.1f}s; log() p50/p99/max in µs "
        + "; ".join(
            f"{name} {percentile(s, 0.5) * 1e6:.1f}/{percentile(s, 0.99) * 1e6:.1f}/"
            f"{max(s) * 1e6:.0f} (n={len(s)})"
            for name, s in samples.items()
        )
        + f"; spooled {stats.spooled} ({spooled_during} by the restart), resent "
        f"{stats.resent_from_spool}, catch-up flush {catch_up_s:.1f}s, "
        f"records hold {len(events)} events for {len(found)} ids, dropped {dict(stats.dropped)}"
    )
    assert not missing, f"{len(missing)} events missing"
    assert outage_p99_ms < 1.0, f"log() p99 during the outage was {outage_p99_ms:.3f} ms"
    assert stats.spooled > 0 and stats.dropped_total == 0


def test_a_sigkilled_process_spooled_events_are_sent_by_the_next_one(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    ids_file = tmp_path / "ids"
    count = 5000
    child = textwrap.dedent(
        f"""
        import time
        from producers.sdk import Client
        # Nothing listens on port 1: every event ends in the spool.
        client = Client(bootstrap_servers="127.0.0.1:1", topic={topic!r}, project="sdk-it",
                        spool_dir={str(spool)!r}, send_timeout_s=1.0, spool_fsync="never")
        ids = [client.log(reference_id=f"k-{{i}}", output="x") for i in range({count})]
        open({str(ids_file)!r}, "w").write("\\n".join(ids))
        while client.stats().spooled < {count}:
            time.sleep(0.05)
        print("spooled", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, cwd=Path(__file__).parents[3]
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"spooled", line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    ids = set(ids_file.read_text().split())
    assert len(ids) == count
    assert list(spool.rglob("*.seg"))  # the killed process left its spool behind

    start = time.monotonic()
    client = make_client(kafka_bootstrap, topic, spool)
    assert client.flush(60), client.stats()
    took = time.monotonic() - start
    stats = client.stats()
    client.close(10)
    events = consume(kafka_bootstrap, topic, expected=count)
    found = {e["body"]["id"] for e in events}  # type: ignore[index]
    assert ids <= found, f"{len(ids - found)} events missing"
    assert not list(spool.rglob("*.seg"))  # deleted once acknowledged
    print(
        f"\nsigkill: {count} events spooled by the killed process, re-sent by the next one in "
        f"{took:.2f}s (resent {stats.resent_from_spool}, dropped {dict(stats.dropped)})"
    )
