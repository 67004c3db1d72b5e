"""Groups without a size limit: one agent trace of many generations and one session of many
traces, sent through the SDK into the whole pipeline.

    python bench/large_group_bench.py [--generations 50000] [--traces 50000] [--workers 2]
        [--save FILE]

Needs the services (``logflume up``, or ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``).
Fresh topics and database; ``--workers`` Faust workers (all three stages) and one sink run
as processes, fed by a :class:`producers.sdk.Client`:

- a Maxim trace with one span holding ``--generations`` generations, each with its result
  (10 prompt and 5 completion tokens);
- ``--traces`` Maxim traces in one session, each with one generation and its result.

It waits until PostgreSQL holds them and prints: the trace's and the session's counts and
token totals against what was sent, how many times a worker restarted (none is the goal:
before the groups were detached, a trace of ~5,700 generations stopped its worker with a
changelog record over the 2 MiB limit), and the largest value on every state changelog
together with the latest value of the two big groups (bounded: not O(members)).
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
from aiokafka import AIOKafkaConsumer

# The process helpers live with the tests: the repository's root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel.settings import Settings
from processors.app import app_id
from processors.topology import STAGES, stage_specs
from producers.sdk import Client
from tests.processes import PipelineProcesses
from tests.services import Services, base_settings, scratch_environment

PROMPT_TOKENS, COMPLETION_TOKENS = 10, 5


def completion(n: int) -> dict[str, Any]:
    return {
        "id": f"cmpl-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }


def send(client: Client, generations: int, traces: int, session: str) -> str:
    """The long trace, then the big session; the long trace's id."""
    big = client.trace(name="long agent run")
    span = big.span(name="loop")
    for n in range(generations):
        gen = span.generation(provider="openai", model="gpt-4o-mini", messages=[])
        gen.result(completion(n))
    span.end()
    big.end()
    for n in range(traces):
        trace = client.trace(name="turn", session_id=session)
        trace.generation(provider="openai", model="gpt-4o-mini", messages=[]).result(completion(n))
        trace.end()
    return str(big.id)


async def wait_stored(
    conn: asyncpg.Connection, trace_id: str, session: str, generations: int, traces: int
) -> tuple[dict[str, Any], dict[str, Any], float]:
    began = time.monotonic()
    trace: dict[str, Any] = {}
    group: dict[str, Any] = {}
    while time.monotonic() - began < 900:
        row = await conn.fetchrow(
            "SELECT (counts->>'generation')::int AS generation_count,"
            " (counts->>'span')::int AS span_count, prompt_tokens, output_tokens, total_tokens"
            " FROM traces WHERE id = $1",
            trace_id,
        )
        trace = dict(row) if row else {}
        row = await conn.fetchrow(
            "SELECT (counts->>'trace')::int AS trace_count, prompt_tokens, output_tokens"
            " FROM sessions WHERE id = $1",
            session,
        )
        group = dict(row) if row else {}
        if (
            trace.get("generation_count") == generations
            and trace.get("total_tokens") == generations * (PROMPT_TOKENS + COMPLETION_TOKENS)
            and group.get("trace_count") == traces
            and group.get("output_tokens") == traces * COMPLETION_TOKENS
        ):
            break
        await asyncio.sleep(1)
    return trace, group, time.monotonic() - began


async def changelog_sizes(settings: Settings, keys: dict[str, str]) -> dict[str, Any]:
    """The largest value of every state changelog, and the latest size of each of ``keys``
    (label -> table key)."""
    topics = {
        f"{app_id(settings)}-{spec.table}-changelog": spec.table
        for spec in stage_specs(settings.topics).values()
    }
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024**2,
    )
    await consumer.start()
    largest: dict[str, int] = dict.fromkeys(topics.values(), 0)
    latest: dict[str, int] = {}
    wanted = {key.encode(): label for label, key in keys.items()}
    try:
        partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, messages in batches.items():
                for message in messages:
                    size = len(message.value or b"")
                    table = topics[tp.topic]
                    largest[table] = max(largest[table], size)
                    if message.key in wanted:
                        latest[wanted[message.key]] = size
    finally:
        await consumer.stop()
    return {"largest_value_bytes": largest, "group_state_bytes": latest}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = base_settings()
    tag = uuid.uuid4().hex[:8]
    services = Services(env.bootstrap_servers, env.dsn)
    async with scratch_environment(
        services, f"lf_big_{tag}", topic_prefix=f"lf-big-{tag}", sink_group=f"lf-big-{tag}-sink"
    ) as settings:
        tmp = Path(tempfile.mkdtemp(prefix="lf-big-"))
        processes = PipelineProcesses(settings, tmp, {"LOGFLUME_PROCESSOR_LOG_LEVEL": "warn"})
        late = 1 if args.join_after_s is not None and args.workers > 1 else 0
        for n in range(args.workers - late):
            processes.start_worker(f"big-w{n}")
        processes.start_sink("big-s")
        client = Client(
            bootstrap_servers=settings.bootstrap_servers,
            topic=settings.topics.events,
            project="big",
            spool_dir=tmp / "spool",
        )
        session = f"big-session-{tag}"
        conn = await asyncpg.connect(settings.dsn, timeout=30)
        print(f"large groups: {args.generations:,} generations in one trace, "
              f"{args.traces:,} traces in one session; logs in {tmp}")  # fmt: skip
        try:
            began = time.monotonic()
            trace_id = send(client, args.generations, args.traces, session)
            delivered = client.flush(300)
            if late:  # a rebalance while the stages work through the groups
                await asyncio.sleep(args.join_after_s)
                processes.start_worker(f"big-w{args.workers - 1}")
            sent_s = time.monotonic() - began
            trace, group, waited_s = await wait_stored(
                conn, trace_id, session, args.generations, args.traces
            )
            restarts = sum(count - 1 for count in processes.starts.values()) + len(
                [p for p in processes.running.values() if p.exited()]
            )
        finally:
            client.close(10)
            await conn.close()
            processes.stop_all()
        sizes = await changelog_sizes(
            settings, {"trace": f"trace:big/{trace_id}", "session": f"session:big/{session}"}
        )
    events = 2 * args.generations + 4 + 3 * args.traces
    return {
        "generations": args.generations,
        "traces": args.traces,
        "events": events,
        "delivered": delivered,
        "send_s": sent_s,
        "stored_after_s": sent_s + waited_s,
        "trace": trace,
        "session": group,
        "trace_ok": trace.get("generation_count") == args.generations
        and trace.get("total_tokens") == args.generations * (PROMPT_TOKENS + COMPLETION_TOKENS),
        "session_ok": group.get("trace_count") == args.traces
        and group.get("output_tokens") == args.traces * COMPLETION_TOKENS,
        "worker_restarts": restarts,
        **sizes,
        "stages": list(STAGES),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=50_000)
    parser.add_argument("--traces", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--join-after-s",
        type=float,
        help="start the last worker this long after the events are sent (a rebalance mid-run)",
    )
    parser.add_argument("--save", type=Path, help="write the result as JSON here")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(
        f"{report['events']:,} events sent in {report['send_s']:.0f} s "
        f"(delivered to Kafka: {report['delivered']}); all stored {report['stored_after_s']:.0f} s "
        f"after the first emit"
    )
    print(f"  trace:   {report['trace']}  right: {report['trace_ok']}")
    print(f"  session: {report['session']}  right: {report['session_ok']}")
    print(f"  worker restarts: {report['worker_restarts']}")
    print(f"  largest changelog value per table (bytes): {report['largest_value_bytes']}")
    print(f"  the two groups' state (bytes): {report['group_state_bytes']}")
    if args.save:
        args.save.write_text(json.dumps(report, indent=2, default=str))
    ok = report["trace_ok"] and report["session_ok"] and report["worker_restarts"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
