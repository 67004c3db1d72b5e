"""Events per second of one stage-1 worker: batch records against one event per record.

    python bench/processors_bench.py [--events 100000] [--single-events 20000]
        [--per-record 100] [--events-per-entity 4] [--reducer real|standin]
        [--json] [--save FILE] [--baseline FILE [--tolerance 0.2]]

Needs a broker (``KAFKA_BOOTSTRAP_SERVERS``, else the local one of ``logflume up``). Per
design, in the same run: fresh topics, all events produced first (log creates and updates
of contract-valid events, ~600 bytes), then one worker (``entities`` stage) started as a
subprocess; events/s = events / the span between the CreateTime of its first and last
output record (startup and group join excluded). Designs:

- ``batch``: ``--per-record`` events per record, one coalesced table write per entity touched
  (about per-record / events-per-entity writes per record);
- ``single``: one event per record, so one table write and one output record per event;
- ``reducer``: the reducer alone in this process, no Kafka and no Faust (the ceiling).

``--baseline FILE`` compares with a saved ``--json``/``--save`` result and exits 1 when a
design lost more than ``--tolerance`` of its events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kernel.settings import Settings, child_environment
from processors.agents import Reducer, Reducers
from processors.app import app_id
from processors.outcome import Lookup, Origin, Outcome, Output
from producers.contract import pack_record, partition_for, unpack_record

PARTITIONS = 4
_TEXT = "The quick brown fox jumps over the lazy dog. " * 3


def standin_reducer(value: bytes, origin: Origin, lookup: Lookup, **_: Any) -> Outcome:
    """Stage 1's shape without its rules: parse, dedup by event id, merge, one write and one
    output per entity touched."""
    outcome = Outcome()
    states: dict[str, dict[str, Any]] = {}
    for raw in unpack_record(value):
        event = orjson.loads(raw)
        body = event["body"]
        key = f"{event['project']}/{body.get('reference_id') or body['id']}"
        state = states.get(key) or lookup(key) or {"seen": [], "fields": {}, "last_ts": 0.0}
        if event["event_id"] in state["seen"]:
            outcome.duplicates += 1
            continue
        ts = datetime.fromisoformat(event["ts"]).timestamp()
        states[key] = {
            "seen": [*state["seen"], event["event_id"]],
            "fields": {**state["fields"], **body},
            "last_ts": max(state["last_ts"], ts),
        }
    for key, state in states.items():
        outcome.writes[key] = state
        trace = state["fields"].get("trace_id") or key
        outcome.outputs.append(Output(f"p/{trace}".encode(), {"key": key, **state["fields"]}))
    return outcome


def real_reducer(max_event_bytes: int) -> Reducer:
    from processors.stage1 import process_events_record

    def reduce(value: bytes, origin: Origin, lookup: Lookup) -> Outcome:
        return process_events_record(value, origin, lookup, max_event_bytes=max_event_bytes)

    return reduce


def make_events(count: int, per_entity: int, ts: str) -> list[tuple[bytes, bytes]]:
    """``(routing key, encoded event)``: a log create then updates, entity after entity."""
    events: list[tuple[bytes, bytes]] = []
    for n in range(count):
        entity, step = divmod(n, per_entity)
        log_id = f"data_{entity:08d}"
        if step == 0:
            body: dict[str, Any] = {
                "id": log_id,
                "path": "bench/support-answer",
                "trace_id": f"tr{entity // 10}",
                "prompt": {"model": "gpt-4o-mini", "temperature": 0.2},
                "messages": [
                    {"role": "system", "content": "You answer support questions."},
                    {"role": "user", "content": _TEXT},
                ],
                "prompt_tokens": 120,
                "metadata": {"tenant": f"t{entity % 50}"},
            }
            kind = "log"
        else:
            body = {
                "id": log_id,
                "output": _TEXT,
                "output_tokens": 40 + step,
                "metadata": {f"step{step}": step},
            }
            kind = "log_update"
        event = {"event_id": f"ev_{n:09d}", "type": kind, "ts": ts, "project": "p", "body": body}
        events.append((f"p/{log_id}".encode(), orjson.dumps(event)))
    return events


def pack(
    events: list[tuple[bytes, bytes]], per_record: int, partitions: int
) -> list[tuple[int, bytes]]:
    grouped: dict[int, list[bytes]] = {}
    for key, encoded in events:
        grouped.setdefault(partition_for(key, partitions), []).append(encoded)
    return [
        (p, pack_record(evs[i : i + per_record]))
        for p, evs in grouped.items()
        for i in range(0, len(evs), per_record)
    ]


def bench_reducer(reduce: Reducer, records: list[tuple[int, bytes]], events: int) -> dict[str, Any]:
    table: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    writes = outputs = 0
    for offset, (partition, value) in enumerate(records):
        outcome = reduce(value, Origin("bench", partition, offset), table.get)
        table.update(outcome.writes)
        writes += len(outcome.writes)
        outputs += len(outcome.outputs)
    seconds = time.perf_counter() - started
    return {
        "events": events,
        "records": len(records),
        "writes": writes,
        "outputs": outputs,
        "seconds": seconds,
        "events_per_s": events / seconds,
    }


async def produce(settings: Settings, records: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        futures = [await producer.send(settings.topics.events, v, partition=p) for p, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed_all(settings: Settings, admin: AIOKafkaAdminClient, ends: dict) -> bool:
    offsets = await admin.list_consumer_group_offsets(app_id(settings))
    return all(
        offsets.get(tp) is not None and offsets[tp].offset >= end for tp, end in ends.items()
    )


async def output_span(settings: Settings) -> tuple[int, int, float]:
    """(records, items, seconds between the first and the last output's CreateTime)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topics.entities, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        stamps: list[int] = []
        items = 0
        await consumer.seek_to_beginning(*tps)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for record in batch:
                    stamps.append(record.timestamp)
                    items += len(orjson.loads(record.value))
    finally:
        await consumer.stop()
    return len(stamps), items, (max(stamps) - min(stamps)) / 1000.0


async def bench_worker(
    args: argparse.Namespace, design: str, events: list[tuple[bytes, bytes]], per_record: int
) -> dict[str, Any]:
    from processors.worker import prepare_topics

    settings = Settings(
        topic_prefix=f"bench-{uuid.uuid4().hex[:8]}-{design}", partitions=PARTITIONS
    )
    records = pack(events, per_record, PARTITIONS)
    await prepare_topics(settings, [])
    await produce(settings, records)
    home = Path(tempfile.mkdtemp(prefix="lf-bench-"))
    env = child_environment(
        {
            "LOGFLUME_TOPIC_PREFIX": settings.topic_prefix,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "LOGFLUME_PARTITIONS": str(PARTITIONS),
            "LOGFLUME_HOME": str(home),
            "LOGFLUME_PROCESSOR_WORKER_NAME": f"bench-{design}",
        }
    )
    command = [sys.executable, __file__, "worker", "--reducer", args.reducer]
    log = (home / "worker.log").open("wb")
    worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
        await consumer.start()
        tps = [TopicPartition(settings.topics.events, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        await consumer.stop()
        async with asyncio.timeout(args.timeout):
            while not await committed_all(settings, admin, ends):
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited ({worker.returncode}); see {log.name}")
                await asyncio.sleep(0.5)
        output_records, outputs, seconds = await output_span(settings)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        if not args.keep_topics:
            names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
            await admin.delete_topics(names)
        await admin.close()
    counted = len(events) - min(per_record, len(events))  # the first record precedes the span
    return {
        "events": len(events),
        "records": len(records),
        "output_records": output_records,
        "outputs": outputs,
        "seconds": seconds,
        "events_per_s": counted / seconds if seconds > 0 else 0.0,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ts = datetime.now(UTC).isoformat()
    batch_events = make_events(args.events, args.events_per_entity, ts)
    single_events = make_events(args.single_events, args.events_per_entity, ts)
    reduce = (
        standin_reducer if args.reducer == "standin" else real_reducer(Settings().max_event_bytes)
    )
    results = {
        "batch": await bench_worker(args, "batch", batch_events, args.per_record),
        "single": await bench_worker(args, "single", single_events, 1),
        "reducer": bench_reducer(
            reduce, pack(batch_events, args.per_record, PARTITIONS), len(batch_events)
        ),
    }
    config = {
        k: getattr(args, k)
        for k in ("events", "single_events", "per_record", "events_per_entity", "reducer")
    }
    return {"config": config, "results": results}


def print_table(report: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    header = (
        f"{'design':<9} {'events':>8} {'records':>8} {'outputs':>8} {'seconds':>8} {'events/s':>10}"
    )
    print(header + ("  vs baseline" if baseline else ""))
    for design, r in report["results"].items():
        line = (
            f"{design:<9} {r['events']:>8} {r['records']:>8} {r['outputs']:>8} "
            f"{r['seconds']:>8.2f} {r['events_per_s']:>10,.0f}"
        )
        if baseline and design in baseline["results"]:
            before = baseline["results"][design]["events_per_s"]
            line += f"  {(r['events_per_s'] - before) / before:+.0%}"
        print(line)
    batch, single = report["results"]["batch"], report["results"]["single"]
    print(
        f"batch / single: {batch['events_per_s'] / single['events_per_s']:.1f}x; "
        f"config {report['config']}"
    )


def regressions(report: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[str]:
    lost = []
    for design, r in report["results"].items():
        before = baseline["results"].get(design, {}).get("events_per_s")
        if before and r["events_per_s"] < before * (1 - tolerance):
            lost.append(f"{design}: {r['events_per_s']:,.0f} < {before:,.0f} events/s")
    return lost


def worker_main(reducer: str) -> None:
    from processors.worker import run_worker

    reducers = Reducers(entities=standin_reducer) if reducer == "standin" else None
    run_worker(Settings(), stages=("entities",), reducers=reducers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["bench", "worker"], default="bench")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--single-events", type=int, default=20_000)
    parser.add_argument("--per-record", type=int, default=100)
    parser.add_argument("--events-per-entity", type=int, default=4)
    parser.add_argument("--reducer", choices=["real", "standin"], default="real")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--save", type=Path, help="also write the JSON result to FILE")
    parser.add_argument("--baseline", type=Path, help="compare with a saved JSON result")
    parser.add_argument("--tolerance", type=float, default=0.2)
    args = parser.parse_args()
    if args.mode == "worker":
        worker_main(args.reducer)
        return
    report = asyncio.run(run(args))
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    if args.save:
        args.save.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report, baseline)
    if baseline and (lost := regressions(report, baseline, args.tolerance)):
        print("regression: " + "; ".join(lost), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
