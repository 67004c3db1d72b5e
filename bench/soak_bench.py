"""Staying power: the whole pipeline fed at a steady rate for a long time, memory watched.

    python bench/soak_bench.py [--minutes 20] [--rate 1500] [--quiet-s 60] [--late-s 200]
        [--hot-max 200000]
        [--state-ttl-s 604800] [--workers 2] [--payload-bytes 0] [--save FILE]

Needs the services (``logflume up``, or ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``).
Fresh topics and database; ``--workers`` Faust workers (all three stages) and one sink run
as processes. The official path feeds them: a :class:`producers.sdk.Client` emitting, at
``--rate`` events/s, a steady stream of *new* work: Maxim traces (a span, two generations
with their results, the end) and Humanloop logs with an update; some updates and some
generation results late (``--late-s`` after their entity's last event, so after the state
left memory when that is over ``--quiet-s`` plus a sweep), in sessions that rotate every
few minutes, so that old entities, traces and sessions go quiet and new ones replace them.
``--payload-bytes`` pads every message and output (the heavy workload).

Every minute it prints the RSS of each worker and of the sink, and the rows stored so far.
At the end: events/s sustained, whether every event reached PostgreSQL, whether memory was
flat over the second half (max within 10% of min per process), and the recovery: every
worker SIGKILLed and restarted, seconds until new logs on every partition are stored. The
processors keep a state in memory for ``--quiet-s`` after an entity's last event
(``LOGFLUME_PROCESSOR_STATE_QUIET_S``), then on the worker's disk until ``--state-ttl-s``
(``LOGFLUME_PROCESSOR_STATE_TTL_S``; both swept every ``--sweep-s``), so a worker's memory
is bounded by the active set, not by the history.
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

# The process helpers live with the tests: the repository's root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel.settings import ProcessorOptions
from producers.sdk import Client
from tests.processes import PipelineProcesses
from tests.services import Services, base_settings, scratch_environment

FLAT_TOLERANCE = 0.10
LATE_COMPLETION_TOKENS = 77  # marks a late generation result in the stored rows


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class Workload:
    """New traces and logs at a steady rate; late updates; rotating sessions."""

    def __init__(self, client: Client, payload_bytes: int, late_s: float) -> None:
        self.client = client
        self.late_s = late_s
        self.pad = "x" * payload_bytes
        self.units = 0
        self.events = 0
        self.late: list[tuple[float, str]] = []  # (due, reference_id)
        self.late_results: list[tuple[float, Any, int]] = []  # (due, generation, n)
        self.logs = 0
        self.traces = 0
        self.late_sent = 0
        self.late_results_sent = 0

    def _session(self) -> str:
        return f"sess-{int(time.time() // 180)}-{self.units % 50}"  # new ones every 3 min

    def unit(self) -> None:
        self.units += 1
        n = self.units
        if n % 2:
            trace = self.client.trace(name="agent", session_id=self._session())
            span = trace.span(name="plan")
            for g in range(2):
                gen = span.generation(
                    provider="openai",
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": f"step {n}.{g} {self.pad}"}],
                )
                if g == 1 and n % 10 == 1:  # its result comes late
                    self.late_results.append((time.monotonic() + self.late_s, gen, n))
                    continue
                gen.result(self._result(n, g, 10))
            span.end()
            trace.end()
            self.events += 7 if n % 10 == 1 else 8  # a late result counts when sent
            self.traces += 1
        else:
            ref = f"soak-{n}"
            self.client.log(
                path="soak/answer",
                prompt={"model": "gpt-4o-mini", "provider": "openai"},
                messages=[{"role": "user", "content": f"question {n} {self.pad}"}],
                output=f"answer {n} {self.pad}",
                prompt_tokens=40,
                output_tokens=12,
                reference_id=ref,
                session_id=self._session(),
            )
            self.client.update_log(reference_id=ref, metadata={"stage": "first"})
            self.events += 2
            self.logs += 1
            if n % 10 == 0:
                self.late.append((time.monotonic() + self.late_s, ref))

    def _result(self, n: int, g: int, completion_tokens: int) -> dict[str, Any]:
        return {
            "id": f"cmpl-{n}-{g}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"ok {self.pad}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": completion_tokens,
                "total_tokens": 50 + completion_tokens,
            },
        }

    def due_late(self) -> None:
        now = time.monotonic()
        while self.late and self.late[0][0] <= now:
            _, ref = self.late.pop(0)
            self.client.update_log(reference_id=ref, output_tokens=20, metadata={"late": "yes"})
            self.events += 1
            self.late_sent += 1
        while self.late_results and self.late_results[0][0] <= now:
            _, gen, n = self.late_results.pop(0)
            gen.result(self._result(n, 1, LATE_COMPLETION_TOKENS))
            self.events += 1
            self.late_results_sent += 1

    def all_late_now(self) -> None:
        self.late = [(0.0, ref) for _, ref in self.late]
        self.late_results = [(0.0, gen, n) for _, gen, n in self.late_results]
        self.due_late()


async def late_stored(conn: asyncpg.Connection) -> tuple[int, int]:
    """Late updates and late generation results stored so far."""
    updates = await conn.fetchval(
        "SELECT count(*) FROM logs WHERE metadata->>'late' = 'yes' AND output_tokens = 20"
    )
    results = await conn.fetchval(
        "SELECT count(*) FROM generations WHERE completion_tokens = $1", LATE_COMPLETION_TOKENS
    )
    return int(updates), int(results)


async def stored(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM logs) AS logs, (SELECT count(*) FROM traces) AS traces,"
        " (SELECT count(*) FROM generations) AS generations"
    )
    return dict(row)


async def recovery(processes: PipelineProcesses, client: Client, conn: asyncpg.Connection) -> float:
    """Restart every worker after the soak (SIGKILL, then start: their state is recovered
    from the changelogs) and time until a new log is stored: seconds."""
    for name in [p.name for p in processes.running.values() if p.kind == "worker"]:
        process = processes.kill(name)
        processes.restart(process)
    began = time.monotonic()
    refs = [f"probe-{uuid.uuid4().hex[:8]}-{n}" for n in range(24)]  # reach every partition
    for ref in refs:
        client.log(path="soak/probe", output="probe", reference_id=ref)
    client.flush(30)
    while time.monotonic() - began < 600:
        found = await conn.fetchval("SELECT count(*) FROM logs WHERE reference_id = ANY($1)", refs)
        if found == len(refs):
            return time.monotonic() - began
        await asyncio.sleep(0.5)
    return float("inf")


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    env = base_settings()
    tag = uuid.uuid4().hex[:8]
    services = Services(env.bootstrap_servers, env.dsn)
    async with scratch_environment(
        services,
        f"lf_soak_{tag}",
        topic_prefix=f"lf-soak-{tag}",
        partitions=args.partitions,
        sink_group=f"lf-soak-{tag}-sink",
    ) as settings:
        tmp = Path(tempfile.mkdtemp(prefix="lf-soak-"))
        extra = {
            "LOGFLUME_PROCESSOR_LOG_LEVEL": "warn",
            "LOGFLUME_PROCESSOR_STATE_TTL_S": str(args.state_ttl_s),
            "LOGFLUME_PROCESSOR_STATE_QUIET_S": str(args.quiet_s),
            "LOGFLUME_PROCESSOR_STATE_HOT_MAX": str(args.hot_max),
            "LOGFLUME_PROCESSOR_STATIC_MEMBERSHIP": str(args.static_membership).lower(),
            "LOGFLUME_PROCESSOR_TTL_SWEEP_INTERVAL_S": str(args.sweep_s),
        }
        processes = PipelineProcesses(settings, tmp, extra)
        for n in range(args.workers):
            processes.start_worker(f"soak-w{n}")
        processes.start_sink("soak-s")
        client = Client(
            bootstrap_servers=settings.bootstrap_servers,
            topic=settings.topics.events,
            project="soak",
            spool_dir=tmp / "spool",
        )
        conn = await asyncpg.connect(settings.dsn, timeout=30)
        work = Workload(client, args.payload_bytes, args.late_s)
        samples: list[dict[str, Any]] = []
        print(f"soak: {args.minutes} min at {args.rate:,} events/s; logs in {tmp}")
        try:
            start = time.monotonic()
            next_sample = start + 60
            end = start + args.minutes * 60
            tick = 0.1

            async def sample_now(minute: int) -> None:
                sample = {
                    "minute": minute,
                    "emitted": work.events,
                    "rss_mb": {p.name: rss_mb(p.pid) for p in processes.running.values()},
                    "stored": await stored(conn),
                    "restarted": processes.restart_exited(),
                }
                samples.append(sample)
                rss = ", ".join(f"{k} {v:,.0f} MB" for k, v in sample["rss_mb"].items())
                print(f"  min {minute:>3}: emitted {work.events:,}; {rss}; "
                      f"stored {sample['stored']}")  # fmt: skip

            while time.monotonic() < end:
                began = time.monotonic()
                target = (began - start) * args.rate
                while work.events < target:
                    work.unit()
                work.due_late()
                if began >= next_sample:
                    next_sample += 60
                    await sample_now(round((began - start) / 60))
                await asyncio.sleep(max(0.0, tick - (time.monotonic() - began)))
            emitted_s = time.monotonic() - start
            await sample_now(round(emitted_s / 60))  # the last minute's memory too
            work.all_late_now()  # the last late updates and results, at once
            delivered = client.flush(120)
            # Every log, trace, late update and late result stored (the pipeline caught up).
            caught_up = False
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                rows = await stored(conn)
                late_ok, late_results_ok = await late_stored(conn)
                if (
                    rows["logs"] >= work.logs
                    and rows["traces"] >= work.traces
                    and late_ok >= work.late_sent
                    and late_results_ok >= work.late_results_sent
                ):
                    caught_up = True
                    break
                await asyncio.sleep(2)
            lag_s = time.monotonic() - start - emitted_s
            recovery_s = await recovery(processes, client, conn)
        finally:
            client.close(10)
            await conn.close()
            processes.stop_all()
    second_half = [s for s in samples if s["minute"] > args.minutes / 2]
    flat: dict[str, Any] = {}
    for name in samples[-1]["rss_mb"] if samples else ():
        values = [s["rss_mb"][name] for s in second_half if s["rss_mb"].get(name)]
        if values:
            flat[name] = {
                "min_mb": min(values),
                "max_mb": max(values),
                # One reading says nothing about a trend.
                "flat": len(values) > 1 and max(values) <= min(values) * (1 + FLAT_TOLERANCE),
            }
    return {
        "minutes": args.minutes,
        "rate": args.rate,
        "state_ttl_s": args.state_ttl_s,
        "static_membership": args.static_membership,
        "payload_bytes": args.payload_bytes,
        "emitted": work.events,
        "events_per_s": work.events / emitted_s,
        "delivered": delivered,
        "caught_up": caught_up,
        "catch_up_s": lag_s,
        "late_updates_stored": late_ok,
        "late_updates_sent": work.late_sent,
        "late_results_stored": late_results_ok,
        "late_results_sent": work.late_results_sent,
        "quiet_s": args.quiet_s,
        "hot_max": args.hot_max,
        "late_s": args.late_s,
        "recovery_s": recovery_s,
        "samples": samples,
        "flat": flat,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--rate", type=int, default=1500, help="events/s emitted")
    parser.add_argument("--state-ttl-s", type=float, default=7 * 24 * 3600.0)
    parser.add_argument("--quiet-s", type=float, default=60.0, help="memory tier of the state")
    parser.add_argument(
        "--hot-max",
        type=int,
        default=ProcessorOptions().state_hot_max,
        help="states per stage and worker kept in memory after a sweep (0: no bound)",
    )
    parser.add_argument("--late-s", type=float, default=200.0, help="lateness of late events")
    parser.add_argument("--sweep-s", type=float, default=15.0, help="sweep period")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--static-membership",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="workers join as static group members (LOGFLUME_PROCESSOR_STATIC_MEMBERSHIP)",
    )
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--payload-bytes", type=int, default=0)
    parser.add_argument("--save", type=Path, help="write the result as JSON here")
    args = parser.parse_args()
    report = asyncio.run(soak(args))
    print(
        f"sustained {report['events_per_s']:,.0f} events/s for {args.minutes} min "
        f"({report['emitted']:,} events); delivered to Kafka: {report['delivered']}; "
        f"all stored: {report['caught_up']} ({report['catch_up_s']:.0f} s after the last emit); "
        f"late updates stored {report['late_updates_stored']:,} of "
        f"{report['late_updates_sent']:,}, late generation results "
        f"{report['late_results_stored']:,} of {report['late_results_sent']:,} "
        f"({args.late_s:.0f} s late, memory tier {args.quiet_s:.0f} s)"
    )
    print(
        f"recovery: every worker SIGKILLed and restarted after the soak; a new log on every "
        f"partition stored {report['recovery_s']:.1f} s after the restart"
    )
    for name, f in report["flat"].items():
        verdict = "flat" if f["flat"] else "NOT flat"
        print(
            f"  {name}: second half {f['min_mb']:,.0f}-{f['max_mb']:,.0f} MB: {verdict} "
            f"(within {FLAT_TOLERANCE:.0%})"
        )
    if args.save:
        args.save.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
