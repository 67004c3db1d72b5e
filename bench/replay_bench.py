"""Replay throughput: ``logflume replay`` against the live Faust path, in one run.

What it does, against the running services (``logflume up``, or ``KAFKA_BOOTSTRAP_SERVERS``
/ ``DATABASE_URL``), on topics and databases of its own:

1. generates N events (``logflume.synthetic``: Maxim traces, Humanloop logs with updates,
   feedback, ~3% re-sent duplicates, ~0.5% invalid) and publishes them to the raw topic as
   the SDK packs them;
2. the baseline: the live path, the real Faust worker (``python -m processors.worker``, all
   three stages) and the real sink (``logflume sink``) as subprocesses, timed from their
   start until both consumer groups have committed everything (the worker's start-up and
   group join, ~10 s, included: it is what a rebuild through the live path costs);
3. the replay engine (:class:`logflume.history.replay.Replay`, what ``logflume replay``
   runs) into a fresh database, once per ``--workers`` value: events/s, and where its time
   went (stages in the main process, database transactions);
4. ``verify`` of every replayed database against the live one (must be identical).

Figures are noisy on a shared 2-core machine: the load average is printed with them.

Run from the repository root::

    python bench/replay_bench.py                       # 200k events
    python bench/replay_bench.py --events 1000000 --json replay.json
    python bench/replay_bench.py --skip-live --baseline replay.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

# The live-pipeline helpers live with the tests: the repository's root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel.settings import Settings
from kernel.topics import ensure_topics
from logflume.history.database import prepare_database
from logflume.history.replay import Replay
from logflume.history.verify import verify
from tests.integration.replay.history import LivePipeline, produce_history
from tests.services import with_database

console = Console(width=None if sys.stdout.isatty() else 150)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


async def run_live(settings: Settings, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        pipeline = LivePipeline(settings, Path(tmp))
        started = time.perf_counter()
        pipeline.start()
        try:
            await pipeline.wait_drained(timeout_s=max(600, events / 100))
        finally:
            pipeline.stop()
    # wait_drained confirms over two quiet polls 3 s apart: not processing time.
    seconds = time.perf_counter() - started - 6
    return {"seconds": round(seconds, 2), "events_per_s": round(events / seconds), "load": load()}


async def run_replay(settings: Settings, dsn: str, workers: int, batch: int) -> dict[str, Any]:
    replay = Replay(settings, dsn, workers=workers, batch_values=batch)
    report = await replay.run()
    return {
        "seconds": round(report.seconds, 2),
        "events": report.events,
        "events_per_s": round(report.events_per_s),
        "stage_s": round(report.stage_seconds, 2),
        "write_s": round(report.write_seconds, 2),
        "rows": report.rows,
        "outputs": report.outputs,
        "load": load(),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    env = Settings()
    tag = uuid.uuid4().hex[:8]
    live_db = f"lf_rbench_{tag}"
    settings = Settings(
        kafka_bootstrap_servers=env.bootstrap_servers,
        database_url=with_database(env.dsn, live_db),
        topic_prefix=f"lf-rbench-{tag}",
        partitions=args.partitions,
        sink_group=f"lf-rbench-{tag}-sink",
    )
    databases = [live_db]
    result: dict[str, Any] = {"replay": {}}
    try:
        await prepare_database(settings.dsn)
        await ensure_topics(settings)
        started = time.perf_counter()
        events, records = await produce_history(settings, args.events, seed=args.seed)
        produce_s = time.perf_counter() - started
        console.print(f"generated and published {events:,} events ({records:,} records) "
                      f"in {produce_s:.1f}s")  # fmt: skip
        result["meta"] = {
            "events": events,
            "records": records,
            "partitions": args.partitions,
            "batch_values": args.batch_values,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if not args.skip_live:
            result["live"] = await run_live(settings, events)
            console.print(f"live path: {result['live']}")
        for workers in args.workers:
            name = f"{live_db}_w{workers}"
            databases.append(name)
            dsn = with_database(env.dsn, name)
            figures = await run_replay(settings, dsn, workers, args.batch_values)
            if not args.skip_live:
                checked = await verify(settings.dsn, dsn, events_topic=settings.topics.events)
                figures["identical_to_live"] = checked.equal
            result["replay"][str(workers)] = figures
            console.print(f"replay, {workers} stage-1 workers: {figures}")
    finally:
        if not args.keep:
            await cleanup(env, settings, databases)
    return result


async def cleanup(env: Settings, settings: Settings, databases: list[str]) -> None:
    admin = await asyncpg.connect(env.dsn, timeout=30)
    try:
        for name in databases:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    kafka = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await kafka.start()
    try:
        names = [t for t in await kafka.list_topics() if t.startswith(settings.topic_prefix)]
        if names:
            await kafka.delete_topics(names)
    finally:
        await kafka.close()


def report(result: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    meta = result["meta"]
    table = Table(title=f"replay of {meta['events']:,} events ({meta['records']:,} records)")
    for column in ("path", "seconds", "events/s", "vs live", "stages s", "writes s", "load"):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_column("verify")
    if baseline:
        table.add_column("baseline events/s", justify="right")
    live = result.get("live")
    if live:
        row = ["live: Faust worker + sink", f"{live['seconds']:.1f}", f"{live['events_per_s']:,}",
               "1.0x", "", "", live["load"], ""]  # fmt: skip
        if baseline:
            row.append(f"{baseline.get('live', {}).get('events_per_s', 0):,}")
        table.add_row(*row)
    for workers, figures in result["replay"].items():
        speedup = f"{figures['events_per_s'] / live['events_per_s']:.1f}x" if live else ""
        same = figures.get("identical_to_live")
        row = [
            f"replay, {workers} stage-1 worker process(es)",
            f"{figures['seconds']:.1f}",
            f"{figures['events_per_s']:,}",
            speedup,
            f"{figures['stage_s']:.1f}",
            f"{figures['write_s']:.1f}",
            figures["load"],
            "" if same is None else "[green]identical[/]" if same else "[red]DIFFERENT[/]",
        ]
        if baseline:
            base = baseline.get("replay", {}).get(workers, {}).get("events_per_s")
            row.append(f"{base:,}" if base else "")
        table.add_row(*row)
    console.print(table)
    console.print(
        f"{meta['cpus']} CPUs, Python {meta['python']}, {meta['partitions']} partitions, "
        f"{meta['batch_values']:,} stage outputs per transaction. Live: from starting the "
        "worker and sink until both groups committed everything. Replay: wall time of the "
        "engine (database migrations, window lookup included); 'stages s' = stage work in "
        "the main process, 'writes s' = time in database transactions (they overlap). "
        "load = 1/5-minute load average at the end (other work on the machine).",
        soft_wrap=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to generate")
    parser.add_argument("--partitions", type=int, default=12, help="partitions per topic")
    parser.add_argument(
        "--workers",
        type=lambda text: [int(w) for w in text.split(",")],
        default=[1, 0],
        help="stage-1 worker processes to try, comma-separated (default 1,0)",
    )
    parser.add_argument("--batch-values", type=int, default=50_000, help="outputs per transaction")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-live", action="store_true", help="no live-path baseline")
    parser.add_argument("--json", type=Path, help="save the figures to this file")
    parser.add_argument("--baseline", type=Path, help="compare with figures saved by --json")
    parser.add_argument("--keep", action="store_true", help="keep the databases and topics")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    result = asyncio.run(main_async(args))
    report(result, baseline)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"figures saved to {args.json}")


if __name__ == "__main__":
    main()
