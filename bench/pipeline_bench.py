"""The whole pipeline, emit to committed PostgreSQL rows: sustained events/s and p50 / p99
emit-to-visible latency at fixed rates, against two baselines measured in the same run.

    python bench/pipeline_bench.py                 # 200k events, rates 1k / 5k / 10k, 20 s each
    python bench/pipeline_bench.py --quick         # 40k events, rates 15 s each, small baselines
    python bench/pipeline_bench.py --save pipe.json
    python bench/pipeline_bench.py --baseline pipe.json [--tolerance 0.2]

Needs the services (``logflume up``, or ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``). Every
design gets fresh topics and a fresh database, and runs the real deployables as processes
(``tests/processes.py``): ``--workers`` Faust workers with all three stages and one sink.

Designs:

- ``pipeline``: what logflume ships: records of up to 40 events (packed per partition, as the
  SDK and the gateway pack them), the batched sink;
- ``one-event-per-record``: the same workers and sink, every record holding one event (the
  per-record cost of Faust paid per event);
- ``per-row-insert``: the shipped workers, but the sink replaced by a writer doing one
  autocommit ``INSERT … ON CONFLICT`` per stage output (``bench/sink_bench.py``'s naive writer).

First, unless ``--warm-events 0``, the pipeline runs once over a stream of its own,
unmeasured: a broker that started minutes ago spends much of its CPU in its JIT compiler,
and whichever design ran first paid for it (``bench.cpu`` counts that CPU apart, as
``kafka_jit``). Sustained: the workers and sink are started and warmed (a few probe events
must be visible first, so group joins and table recovery are excluded), then N events of
the realistic synthetic stream (traces with spans and generations, logs with updates, ~3%
duplicates, ~0.5% invalid) are emitted as fast as the producer goes; events/s = N / (the time every
table reached its final rows, versions included - the first emit; the sums are polled every
second, and a table found final reached it when its newest row was committed, bounded by
the poll before; without the server's ``track_commit_timestamp``, when it was found).
The final tables are then checked against the oracle (the pure stages run sequentially),
so a fast wrong run cannot pass. Latency (``pipeline`` only): log events emitted at a
fixed rate in 20 ms ticks; the first of each tick and every 25th is a probe whose row is
polled for every 25 ms; latency = first poll that sees it - its emit (so it includes up to
one poll interval). ``--prompt-versions 0`` sends them without a prompt (no prompt-version
rollup), which separates the groups stage's cost from the rest. ``--heavy`` emits the heavy
mix instead (``logflume.synthetic.generate_heavy_events``: agent traces of 500 spans, a
session of 5,000 traces, 50 KB messages, 10% of logs save=false), held to the oracle alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

# The oracle and process helpers live with the tests: the repository's root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu import cpu_by_role, cpu_spent
from bench.processors_bench import regressions  # events/s lost vs a baseline
from kernel.settings import Settings
from logflume.synthetic import BASE, generate_events, generate_heavy_events, pack_events
from processors.codec import RECORD_OVERHEAD_BYTES
from producers.contract import pack_record, partition_for
from tests.integration.sinks.stream import Oracle, oracle_mismatches, run_stages
from tests.processes import PipelineProcesses
from tests.services import Services, base_settings, scratch_environment

console = Console(width=None if sys.stdout.isatty() else 150)
DESIGNS = ("pipeline", "one-event-per-record", "per-row-insert")
PROBE_EVERY = 25
POLL_S = 0.025
TICK_S = 0.02
# Sums over every table: polled often, they take the CPU the sink and Postgres need (at
# 0.2 s they were a quarter of PostgreSQL's statement time in a sustained run,
# pg_stat_statements). When a table is found final, the time it got there is read from its
# rows (the commit time of the newest, track_commit_timestamp), so the poll period bounds
# the error only where a delete was the last change (or without commit timestamps).
REACHED_POLL_S = 1.0


# -- emitting --------------------------------------------------------------------------------


PROBE_PROJECT = "bench"
# Probes are looked up by the logs' primary key (project, id): a lookup by id alone scanned
# the whole table 40 times a second, and that scan, not the pipeline, was what grew.
_PROBES_SEEN = "SELECT id FROM logs WHERE project = $1 AND id = ANY($2::text[])"
# The latency runs' probes, by a range of that key: their ids sort in emit order, so one
# poll reads the probes that became visible from the oldest unseen one on. Looking up every
# waiting id (``_PROBES_SEEN``) cost PostgreSQL ~22 ms per poll with a backlog of a few
# hundred: half a core at 5,000 events/s, as much as the pipeline's own writes.
_PROBES_IN_RANGE = "SELECT id FROM logs WHERE project = $1 AND id BETWEEN $2 AND $3"
# More rows than this in one poll (probes seen after an old one that is still unseen) and
# the poller slows down, so that it does not load what it measures.
_POLL_ROWS_SLOW_DOWN = 2000


def probe_id(run: str, n: int) -> str:
    """A probe's log id: zero-padded, so that ids sort in emit order within a run."""
    return f"probe_{run}_{n:09d}"


def probe_event(
    run: str, n: int, ts: str, versions: int = 100, *, probe: bool = True
) -> tuple[bytes, bytes]:
    """``(routing key, event)``: a ~600-byte log create with a unique id, of one of
    ``versions`` prompt versions (0: no prompt, so no prompt-version rollup either). Only a
    ``probe`` is looked for in the logs table; the others are the load around it."""
    log_id = probe_id(run, n) if probe else f"data_{run}_{n}"
    body: dict[str, Any] = {
        "id": log_id,
        "path": "bench/support-answer",
        "messages": [
            {"role": "system", "content": "You answer support questions."},
            {"role": "user", "content": f"My order {n} has not arrived. " * 4},
        ],
        "output": "Sorry to hear that! Could you give me your order number?",
        "prompt_tokens": 120 + n % 50,
        "output_tokens": 40 + n % 20,
        "metadata": {"tenant": f"t{n % 50}", "run": run},
    }
    if versions:
        # As in the synthetic stream: a prompt version's group state holds every member, so
        # one version for every probe would outgrow a record (see the README).
        temperature = n % versions / versions
        body["prompt"] = {"model": "gpt-4o-mini", "provider": "openai", "temperature": temperature}
    event = {"event_id": f"ev_{run}_{n}", "type": "log", "ts": ts, "project": PROBE_PROJECT,
             "body": body}  # fmt: skip
    return f"bench/{log_id}".encode(), orjson.dumps(event)


def _producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=settings.max_record_bytes + RECORD_OVERHEAD_BYTES,
    )


async def send_all(settings: Settings, records: Sequence[tuple[int, bytes]]) -> float:
    """Send as fast as the producer goes and wait for every ack; the monotonic start."""
    producer = _producer(settings)
    await producer.start()
    try:
        started = time.monotonic()
        futures = [await producer.send(settings.topics.events, v, partition=p) for p, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return started


# -- seeing rows land ------------------------------------------------------------------------


def final_targets(oracle: Oracle) -> dict[tuple[str, str], tuple[int, int]]:
    """(table, version column) -> (rows, sum of versions) the tables hold when done (the
    rows the sink keeps: not a deleted entity's, nor a group's with no member left)."""
    targets: dict[tuple[str, str], tuple[int, int]] = {}
    for spec, value in oracle.kept():
        column = spec.version_column
        rows, total = targets.get((spec.table, column), (0, 0))
        version = value["version"] or 0  # rollup_version is the rollup's own "version"
        targets[(spec.table, column)] = (rows + 1, total + int(version))
    return targets


async def behind(
    conn: asyncpg.Connection, targets: dict[tuple[str, str], tuple[int, int]]
) -> list[str]:
    """The tables that do not hold their final rows yet (versions only grow, so equal sums
    mean final), each with the sum of versions found and the one expected. A table found
    final is removed from ``targets``: it is not scanned again (each scan reads the whole
    table, CPU that PostgreSQL and the sink would otherwise have)."""
    lagging = []
    for (table, column), (_, total) in list(targets.items()):
        found = await conn.fetchval(f'SELECT coalesce(sum("{column}"), 0) FROM "{table}"')
        if int(found) < total:
            lagging.append(f"{table}.{column} {int(found):,} of {total:,}")
        else:
            del targets[(table, column)]
    return lagging


async def last_commit(conn: asyncpg.Connection, table: str) -> float | None:
    """When the newest row of ``table`` was committed (Unix time), or None (no rows). Needs
    the server's ``track_commit_timestamp`` (``logflume up`` turns it on)."""
    value = await conn.fetchval(
        f'SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) FROM "{table}"'
    )
    return None if value is None else float(value)


async def wait_visible(conn: asyncpg.Connection, ids: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while ids:
        rows = await conn.fetch(_PROBES_SEEN, PROBE_PROJECT, list(ids))
        ids -= {r["id"] for r in rows}
        if ids and time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids)} events never became visible")
        await asyncio.sleep(0.2)


_VERSIONED = (("logs", "version"), ("traces", "rollup_version"), ("sessions", "rollup_version"),
              ("prompt_version_stats", "rollup_version"))  # fmt: skip


def cpu_figures(
    roles: dict[int, str], before: dict[tuple[str, int], float], events: int, seconds: float
) -> dict[str, Any]:
    """CPU per event of each role since ``before`` (``bench.cpu``), and the cores busy on
    average over ``seconds``: where a phase's time went."""
    spent = cpu_spent(before, cpu_by_role(roles))
    return {
        "cpu_us_per_event": {role: t * 1e6 / max(events, 1) for role, t in spent.items()},
        "cpu_busy": sum(spent.values()) / seconds,
    }


def cpu_text(figures: dict[str, Any]) -> str:
    per_event = ", ".join(f"{r} {us:,.0f}" for r, us in figures["cpu_us_per_event"].items())
    return f"CPU us/event: {per_event}; {figures['cpu_busy']:.2f} cores busy"


# -- one design ------------------------------------------------------------------------------


@dataclass
class Design:
    name: str
    settings: Settings
    processes: PipelineProcesses
    conn: asyncpg.Connection
    warm_records: list[tuple[int, bytes]] = field(default_factory=list)

    def cpu_reading(self) -> tuple[dict[int, str], dict[tuple[str, int], float]]:
        """The roles of the deployables (by pid) and the CPU of every role so far."""
        roles = {p.pid: p.kind for p in self.processes.running.values()}
        return roles, cpu_by_role(roles)

    async def warm_up(self, timeout_s: float) -> float:
        """Probe events until visible: group joins and table recovery out of the figures."""
        started = time.monotonic()
        # Stamped at the synthetic stream's start, not now: a partition's stream time is its
        # newest event's, and states fall quiet, then expire, relative to it (processors.app).
        # Probes of today ahead of a stream of March made every state of the stream older
        # than the 7-day TTL: the first sweep during the run expired them, and stage 2
        # restarted traces the oracle did not (runs over ~60 s never matched it).
        ts = BASE.isoformat()
        probes = [probe_event("warm", n, ts) for n in range(20)]
        self.warm_records = pack_keyed(probes, self.settings.partitions, 1)
        await send_all(self.settings, self.warm_records)
        ids = {orjson.loads(e)["body"]["id"] for _, e in probes}
        await wait_visible(self.conn, ids, timeout_s)
        return time.monotonic() - started

    async def sustained(self, events: list[bytes], per_record: int, timeout_s: float) -> dict:
        s = self.settings
        records = pack_events(events, s.partitions, max_per_record=per_record)
        # (the oracle runs before the clock starts: ~1 minute per 500,000 events here)
        console.print(f"[dim]{self.name}: computing the oracle of {len(events):,} events")
        oracle = run_stages(s, [*self.warm_records, *records], len(events)).oracle
        targets = final_targets(oracle)
        roles, cpu_before = self.cpu_reading()
        started = await send_all(s, records)
        wall_started = started + (time.time() - time.monotonic())  # the first emit, Unix time
        emitted = time.monotonic() - started
        deadline = started + timeout_s
        pending = dict(targets)  # behind() removes the tables found final
        commit_times = await self.conn.fetchval("SHOW track_commit_timestamp") == "on"
        final_at: dict[str, float] = {}  # table -> seconds after the first emit
        lagging_at = started  # when the last poll that found a table lagging began
        while True:
            polled_at = time.monotonic()
            lagging = await behind(self.conn, pending)
            for table in {t for t, _ in targets} - {t for t, _ in pending} - set(final_at):
                # Final between the poll that found it lagging and this one: the commit of
                # its newest row says when (a delete as the last change leaves the bounds).
                found = time.monotonic() - started
                committed = await last_commit(self.conn, table) if commit_times else None
                final_at[table] = (
                    found
                    if committed is None
                    else min(max(committed - wall_started, lagging_at - started), found)
                )
            if not lagging:
                break
            lagging_at = polled_at
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: not done after {timeout_s:.0f}s ({'; '.join(lagging)})"
                )
            await asyncio.sleep(REACHED_POLL_S)
        observed = time.monotonic() - started  # the CPU readings cover this much
        # Emit to final rows; never less than the emit itself (a stream whose every event
        # was refused leaves its tables final before the first emit).
        seconds = max(max(final_at.values(), default=observed), emitted)
        # Cores busy over the work (emit to final rows), not over the polls after it: the
        # last poll comes up to REACHED_POLL_S later, idle time that once read a saturated
        # quick run (~1.5 s) as 1.4-1.5 cores busy. The idle tail's CPU stays in (idle
        # workers, the polls): it may over-read by a tenth of a core.
        cpu = cpu_figures(roles, cpu_before, len(events), seconds)
        oracle.dead_letters.clear()  # checked by the suites; offsets differ after the warm-up
        problems = await oracle_mismatches(self.conn, oracle)
        return {
            "events": len(events),
            "records": len(records),
            "emit_s": emitted,
            "seconds": seconds,
            "events_per_s": len(events) / seconds,
            **cpu,
            # When each table became final (its newest write, between two polls): which
            # step of the pipeline the last seconds waited for.
            "final_at_s": dict(sorted(final_at.items(), key=lambda item: item[1])),
            "matches_oracle": not problems,
            "problems": problems[:3],
        }

    async def drain(self, timeout_s: float) -> None:
        """Wait until the sum of every table's versions stops changing for 2 s."""
        last, still_since, deadline = None, time.monotonic(), time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sums = []
            for table, column in _VERSIONED:
                sums.append(await self.conn.fetchval(
                    f'SELECT coalesce(sum("{column}"), 0) FROM "{table}"'))  # fmt: skip
            if sums != last:
                last, still_since = sums, time.monotonic()
            elif time.monotonic() - still_since >= 2.0:
                return
            await asyncio.sleep(0.5)

    async def latency(self, rate: int, duration_s: float, drain_s: float, versions: int) -> dict:
        """Emit at ``rate`` events/s for ``duration_s``; emit-to-visible of the probes. A
        probe not visible ``drain_s`` after the last emit counts as unseen (and as that
        wait in the percentiles, so they are lower bounds then)."""
        s = self.settings
        run = f"r{rate}_{uuid.uuid4().hex[:4]}"
        producer = _producer(s)
        await producer.start()
        emitted_at: dict[str, float] = {}
        seen_after: dict[str, float] = {}
        done = asyncio.Event()

        async def poll() -> None:
            order: list[str] = []  # the probes in emit order (= id order) ...
            oldest = 0  # ... and the first of them not seen yet
            while not (done.is_set() and len(seen_after) == len(emitted_at)):
                order += itertools.islice(emitted_at, len(order), None)
                while oldest < len(order) and order[oldest] in seen_after:
                    oldest += 1
                rows = []
                if oldest < len(order):
                    low, high = order[oldest], order[-1]
                    rows = await self.conn.fetch(_PROBES_IN_RANGE, PROBE_PROJECT, low, high)
                    now = time.monotonic()
                    for r in rows:
                        if r["id"] not in seen_after and r["id"] in emitted_at:
                            seen_after[r["id"]] = now - emitted_at[r["id"]]
                slow = len(rows) > _POLL_ROWS_SLOW_DOWN
                await asyncio.sleep(10 * POLL_S if slow else POLL_S)

        poller = asyncio.create_task(poll())
        futures = []
        sent = 0
        roles, cpu_before = self.cpu_reading()
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < duration_s:
                due = int(rate * elapsed) - sent
                if due > 0:
                    ts = _now()
                    # The first of each tick and every PROBE_EVERY-th is a probe.
                    batch = [
                        probe_event(run, sent + k, ts, versions, probe=k % PROBE_EVERY == 0)
                        for k in range(due)
                    ]
                    now = time.monotonic()
                    for k in range(0, due, PROBE_EVERY):
                        emitted_at[probe_id(run, sent + k)] = now
                    for partition, value in pack_keyed(batch, s.partitions, 40):
                        futures.append(
                            await producer.send(s.topics.events, value, partition=partition)
                        )
                    sent += due
                await asyncio.sleep(TICK_S)
            emit_s = time.monotonic() - started
            await asyncio.gather(*futures)
            done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(poller), timeout=drain_s)
        finally:
            poller.cancel()
            await producer.stop()
        gave_up = time.monotonic()
        # Emit and drain, all of its work: near 2 cores busy on 2 cores, the rate is over what
        # the machine sustains for these events, and the backlog is the latency.
        cpu = cpu_figures(roles, cpu_before, sent, gave_up - started)
        unseen = [gave_up - at for i, at in emitted_at.items() if i not in seen_after]
        latencies = sorted([*seen_after.values(), *unseen])
        return {
            "rate": rate,
            "achieved_rate": sent / emit_s,
            "events": sent,
            "probes": len(latencies),
            "unseen": len(unseen),
            "p50_s": statistics.median(latencies),
            "p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "max_s": latencies[-1],
            **cpu,
        }


def pack_keyed(events: list[tuple[bytes, bytes]], partitions: int, per_record: int) -> list:
    """``(key, event)`` pairs packed per partition of the key, ``per_record`` per record."""
    grouped: dict[int, list[bytes]] = {}
    for key, encoded in events:
        grouped.setdefault(partition_for(key, partitions), []).append(encoded)
    return [
        (p, pack_record(evs[i : i + per_record]))
        for p, evs in grouped.items()
        for i in range(0, len(evs), per_record)
    ]


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


@contextlib.asynccontextmanager
async def running(args: argparse.Namespace, name: str) -> AsyncIterator[Design]:
    """Fresh topics and database, the processes of ``name`` started and warmed up."""
    env = base_settings()  # the environment's services, else the local ones of `up`
    tag = uuid.uuid4().hex[:8]
    services = Services(env.bootstrap_servers, env.dsn)
    async with scratch_environment(
        services,
        f"lf_pipe_bench_{tag}",
        topic_prefix=f"lf-pipe-bench-{tag}",
        partitions=args.partitions,
        sink_group=f"lf-pipe-bench-{tag}-sink",
        sink_linger_ms=args.linger_ms,
    ) as settings:
        tmp = Path(tempfile.mkdtemp(prefix=f"lf-pipe-bench-{name}-"))
        processes = PipelineProcesses(settings, tmp, {"LOGFLUME_PROCESSOR_LOG_LEVEL": "warn"})
        for n in range(args.workers):
            processes.start_worker(f"{name}-w{n}")
        if name == "per-row-insert":
            processes.start_sink(f"{name}-s", module="bench.naive_sink")
        else:
            processes.start_sink(f"{name}-s")
        # Custom plans: a generic plan made while the tables were empty scanned the whole
        # logs table for every probe poll once they were not (PostgreSQL at 70% of a core).
        conn = await asyncpg.connect(
            settings.dsn, timeout=30, server_settings={"plan_cache_mode": "force_custom_plan"}
        )
        try:
            design = Design(name, settings, processes, conn)
            warm = await design.warm_up(args.timeout)
            console.print(f"[dim]{name}: warmed up in {warm:.1f}s (logs in {tmp})[/]")
            yield design
        finally:
            await conn.close()
            processes.stop_all()


# -- the run, the table ----------------------------------------------------------------------


async def warm_broker(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline once over a stream of its own, unmeasured, before the designs: a broker
    started a minute ago spends more CPU compiling (its JIT) than serving requests, and the
    design that ran first paid for it (Kafka 82-154 us per event in the first sustained run
    after ``logflume up``, 37 once warm; the same run then 5,800 against 8,000 events/s)."""
    events = generate_events(args.warm_events, seed=args.seed + 1)
    async with running(args, "warm-up") as design:
        figures = await design.sustained(events, 40, args.timeout)
    console.print(
        f"[dim]warm-up: {figures['events_per_s']:,.0f} events/s, not counted; "
        f"{cpu_text(figures)}[/]"
    )
    return figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    rates = [int(r) for r in args.rates.split(",") if r]
    warm_up = await warm_broker(args) if args.warm_events else None
    for name in DESIGNS:
        if name not in args.designs:
            continue
        count = args.events if name == "pipeline" else args.baseline_events
        make = generate_heavy_events if args.heavy else generate_events
        events = make(count, seed=args.seed)
        per_record = 1 if name == "one-event-per-record" else 40
        async with running(args, name) as design:
            figures = await design.sustained(events, per_record, args.timeout)
            console.print(
                f"[dim]{name}: {figures['events_per_s']:,.0f} events/s sustained (emitted in "
                f"{figures['emit_s']:.1f}s of {figures['seconds']:.1f}s); {cpu_text(figures)}[/]"
            )
            final = ", ".join(f"{t} {at:.1f}s" for t, at in figures["final_at_s"].items())
            console.print(f"[dim]  tables final after the first emit: {final}[/]")
            if name == "pipeline":
                figures["latency"] = []
                for rate in rates:
                    measured = await design.latency(
                        rate, args.duration, args.drain, args.prompt_versions
                    )
                    figures["latency"].append(measured)
                    console.print(
                        f"[dim]  {rate:,}/s: p50 {measured['p50_s'] * 1000:,.0f} ms, "
                        f"p99 {measured['p99_s'] * 1000:,.0f} ms, {measured['unseen']} unseen; "
                        f"{cpu_text(measured)}[/]"
                    )
                    # The next rate starts on an idle pipeline (stages 2 and groups too).
                    await design.drain(args.drain)
        results[name] = figures
    config = {k: getattr(args, k) for k in
              ("events", "baseline_events", "rates", "duration", "workers", "partitions",
               "linger_ms", "seed", "heavy", "warm_events")}  # fmt: skip
    report = {"config": config, "warm_up": warm_up, "results": results}
    budget = ratio_budget(results, len(os.sched_getaffinity(0)))
    if budget is not None:
        report["one_event_budget"] = budget
    return report


# The goal against the one-event-per-record baseline (README, issue 13).
ONE_EVENT_GOAL = 5.0
# The roles that are not the stages' workers: what the pipeline spends per event outside them.
_OUTSIDE_WORKERS = ("sink", "postgres", "kafka")


def ratio_budget(results: dict[str, Any], cores: int) -> dict[str, Any] | None:
    """What the ratio to the one-event-per-record baseline asks of the pipeline's CPU, from
    this run: at ``ONE_EVENT_GOAL`` times the baseline's events/s with every one of
    ``cores`` busy (the most the machine gives), the CPU each event may take, against what
    the pipeline's events took and what the roles outside its workers took alone. None
    without both designs."""
    pipeline, one = results.get("pipeline"), results.get("one-event-per-record")
    if not pipeline or not one:
        return None
    spent = pipeline["cpu_us_per_event"]
    used = sum(us for role, us in spent.items() if role not in ("bench", "kafka_jit"))
    outside = sum(spent.get(role, 0.0) for role in _OUTSIDE_WORKERS)
    goal_rate = ONE_EVENT_GOAL * one["events_per_s"]
    return {
        "ratio": pipeline["events_per_s"] / one["events_per_s"],
        "goal_events_per_s": goal_rate,
        "cores": cores,
        "budget_us_per_event": cores * 1e6 / goal_rate,
        "pipeline_us_per_event": used,
        "outside_workers_us_per_event": outside,
        "workers_us_per_event": spent.get("worker", 0.0),
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _change(now: float, before: float | None, higher_is_better: bool = True) -> str:
    if not before:
        return "-"
    delta = (now - before) / before
    good = delta >= 0 if higher_is_better else delta <= 0
    return f"[{'green' if good else 'red'}]{delta:+.0%}[/]"


def print_report(report: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    results = report["results"]
    table = Table(title="whole pipeline: emit -> committed PostgreSQL rows (sustained)")
    for header in ("design", "events", "records", "seconds", "events/s", "vs pipeline",
                   "oracle"):  # fmt: skip
        table.add_column(header, justify="left" if header == "design" else "right")
    if baseline:
        table.add_column("vs saved run", justify="right")
    main = results.get("pipeline", {}).get("events_per_s")
    for name, r in results.items():
        cells = [
            name,
            f"{r['events']:,}",
            f"{r['records']:,}",
            f"{r['seconds']:.1f}",
            f"{r['events_per_s']:,.0f}",
            f"{r['events_per_s'] / main:.2f}x" if main else "-",
            "equal" if r["matches_oracle"] else f"[red]differs: {r['problems']}[/]",
        ]
        if baseline:
            before = baseline["results"].get(name, {}).get("events_per_s")
            cells.append(_change(r["events_per_s"], before))
        table.add_row(*cells)
    console.print(table)
    latency = results.get("pipeline", {}).get("latency", [])
    if latency:
        lat = Table(title="pipeline: emit-to-visible latency at fixed rates")
        for header in ("rate", "achieved", "events", "probes", "unseen", "p50", "p99", "max"):
            lat.add_column(header, justify="right")
        if baseline:
            lat.add_column("p99 vs saved run", justify="right")
        saved = {m["rate"]: m for m in (baseline or {}).get("results", {})
                 .get("pipeline", {}).get("latency", [])}  # fmt: skip
        for m in latency:
            cells = [
                f"{m['rate']:,}/s",
                f"{m['achieved_rate']:,.0f}/s",
                f"{m['events']:,}",
                f"{m['probes']:,}",
                f"{m.get('unseen', 0):,}",
                _ms(m["p50_s"]),
                _ms(m["p99_s"]),
                _ms(m["max_s"]),
            ]
            if baseline:
                before = saved.get(m["rate"], {}).get("p99_s")
                cells.append(_change(m["p99_s"], before, higher_is_better=False))
            lat.add_row(*cells)
        console.print(lat)
    budget = report.get("one_event_budget")
    if budget:
        console.print(
            f"vs one event per record: {budget['ratio']:.2f}x (goal {ONE_EVENT_GOAL:g}x, "
            f"{budget['goal_events_per_s']:,.0f} events/s): with all {budget['cores']} cores "
            f"busy that leaves {budget['budget_us_per_event']:.0f} us of CPU per event; the "
            f"pipeline took {budget['pipeline_us_per_event']:.0f} (workers "
            f"{budget['workers_us_per_event']:.0f}; the sink, PostgreSQL and Kafka alone "
            f"{budget['outside_workers_us_per_event']:.0f})",
            soft_wrap=True,
        )
    c = report["config"]
    console.print(
        f"{c['workers']} Faust worker(s) with all stages + 1 sink, {c['partitions']} "
        f"partitions, sink linger {c['linger_ms']} ms; goals: >= 25,000 events/s sustained, "
        f"p99 <= 1 s at 5,000 events/s. Latency includes up to {POLL_S * 1000:.0f} ms of "
        "polling.",
        soft_wrap=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about 3 minutes)")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--baseline-events", type=int, default=30_000,
                        help="events of the sustained run of each baseline design")  # fmt: skip
    parser.add_argument("--rates", default="1000,5000,10000", help="latency runs, events/s")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument(
        "--drain", type=float, default=120.0, help="seconds after a rate until probes are unseen"
    )
    parser.add_argument("--prompt-versions", type=int, default=100,
                        help="prompt versions of the latency events (0: no prompt)")  # fmt: skip
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Faust workers, each with all three stages (2: `logflume run`'s default)",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--linger-ms", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--warm-events",
        type=int,
        default=40_000,
        help="events of an unmeasured pipeline run before the designs, which warms the "
        "broker's JIT (0: measure a cold broker)",
    )
    parser.add_argument(
        "--heavy",
        action="store_true",
        help="the heavy workload: agent traces of 500 spans, a session of 5,000 traces, "
        "50 KB messages, 10%% of logs save=false (logflume.synthetic.HeavyWorkload)",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--save", type=Path, help="also write the JSON result to FILE")
    parser.add_argument("--baseline", type=Path, help="compare with a saved JSON result")
    parser.add_argument("--tolerance", type=float, default=0.2)
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.baseline_events, args.duration = 40_000, 8_000, 15.0
    args.designs = [d.strip() for d in args.designs.split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.json:  # stdout holds the JSON alone; the progress lines go to stderr
        console.file = sys.stderr
    logging.basicConfig(level=logging.WARNING)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    report = asyncio.run(run(args))
    if args.save:
        args.save.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, baseline)
    if baseline and (lost := regressions(report, baseline, args.tolerance)):
        print("regression: " + "; ".join(lost), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
