"""One ``logflume demo`` session: the main job end to end on one machine.

1. bring Kafka and PostgreSQL up if needed (``manager.up``: idempotent; migrations, topics);
2. start the pipeline (gateway, processors, sinks) under the ``run`` supervisor, with the
   stages' output in ``<home>/logs/demo-<run>/`` (a gateway already listening on the
   configured port is reused);
3. create an API key for the run's project;
4. emit the customer-support workload (:mod:`logflume.demo.workload`) through the SDK at
   ``--rate``, with a live view of events/s, lag per stage and the stored totals;
5. once drained (every lag 0, totals stable), compare the totals in PostgreSQL with the
   ones the demo expects from its own valid events, and print a trace to open;
6. stop the pipeline it started; Kafka and PostgreSQL keep running.

Exit status: 0 when every total matches, 1 on a mismatch or when the pipeline did not
drain within ``--drain-timeout``, 130 when interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from gateway import GatewaySettings
from gateway.auth import create_key
from kernel.clients import kafka_producer, pg_connect
from kernel.lag import LagReader
from kernel.settings import Settings
from logflume.runner import pipeline_specs
from logflume.services import manager
from logflume.supervisor import Supervisor
from producers.sdk import Client

from .emit import EmitProgress, Emitter
from .observe import Drain, Snapshot, read_totals, snapshot
from .view import DemoState, compare, live_view, status_line, summary_table
from .workload import Plan, build_plan

__all__ = ["DemoOptions", "run_demo"]

EXIT_MISMATCH, EXIT_INTERRUPTED = 1, 130
_POLL_S = 0.5
_LINE_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    events: int
    rate: float
    seed: int
    project: str | None
    processors: int
    sinks: int
    drain_timeout_s: float
    summary_json: Path | None


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _fetch(url: str, key: str) -> tuple[int, dict[str, Any] | None]:
    request = urllib.request.Request(url, headers={"X-API-KEY": key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


async def _trace_example(url: str, key: str, timeout_s: float = 15.0) -> tuple[int, Any]:
    """GET the example trace through the gateway (it may still be starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await asyncio.to_thread(_fetch, url, key)
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                return 0, None
            await asyncio.sleep(0.5)


async def run_demo(settings: Settings, opts: DemoOptions, console: Console) -> int:
    """The whole demo; the exit status."""
    # The demo makes invalid SDK calls on purpose and counts them: no warning per reason.
    logging.getLogger("producers.sdk").setLevel(logging.ERROR)
    run_id = f"r{secrets.token_hex(3)}"
    project = opts.project or f"demo-{run_id}"
    console.print("[bold]logflume demo[/]: bringing the services up (if needed)…")
    report = await manager.up(settings)
    for svc in report.services:
        console.print(f"  {svc.name}: {escape(svc.where)} {svc.action}", soft_wrap=True)
    migrations = ", ".join(report.migrations_applied) or "up to date"
    console.print(f"  migrations: {escape(migrations)}", soft_wrap=True)

    conn = await pg_connect(settings)
    try:
        _record, key = await create_key(conn, project, f"demo {run_id}")
        plan = await asyncio.to_thread(
            build_plan, events=opts.events, seed=opts.seed, run_id=run_id, project=project
        )
        console.print(
            f"  project {project}: {plan.events:,} events in "
            f"{plan.expected.traces:,} support conversations, seed {opts.seed}"
        )
        return await _with_pipeline(settings, opts, console, conn, plan, key)
    finally:
        await conn.close()


async def _with_pipeline(
    settings: Settings,
    opts: DemoOptions,
    console: Console,
    conn: asyncpg.Connection,
    plan: Plan,
    key: str,
) -> int:
    gateway = settings.gateway
    reuse_gateway = _port_open(gateway.host, gateway.port)
    log_dir = settings.home.expanduser().resolve() / "logs" / f"demo-{plan.run_id}"
    specs = pipeline_specs(
        settings, processors=opts.processors, sinks=opts.sinks, gateway=not reuse_gateway
    )
    state = DemoState(plan, progress=EmitProgress())
    supervisor = Supervisor(
        specs, log_dir=log_dir, stop_timeout_s=30, on_event=lambda m: state.note(m)
    )
    console.print(
        f"  pipeline: {', '.join(s.name for s in specs)}"
        f"{' (reusing the gateway already on its port)' if reuse_gateway else ''}; "
        f"logs in {log_dir}",
        soft_wrap=True,
    )
    sup_task = asyncio.create_task(supervisor.run())
    stop = asyncio.Event()
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: (interrupted.set(), stop.set()))
    client = Client(
        bootstrap_servers=settings.bootstrap_servers,
        topic=settings.topics.events,
        project=plan.project,
        client_id="logflume-demo",
        spool_dir=settings.home.expanduser() / "demo-spool",
        max_event_bytes=settings.max_event_bytes,
    )
    producer = kafka_producer(settings, acks="all")
    try:
        await producer.start()
        emitter = Emitter(client, producer, settings.topics.events, settings.partitions)
        state.progress = emitter.progress
        drained = await _play(
            settings, opts, console, conn, plan, emitter, state, stop, interrupted, sup_task
        )
        if interrupted.is_set():
            console.print("[yellow]interrupted[/]: stopping the pipeline")
            return EXIT_INTERRUPTED
        return await _summary(
            settings, console, conn, plan, key, state, drained, gateway, opts.summary_json
        )
    finally:
        await asyncio.to_thread(client.close, 10)
        with contextlib.suppress(KafkaError):
            await producer.stop()
        supervisor.stop()
        await sup_task
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        console.print(
            "pipeline stopped; Kafka and PostgreSQL are still running "
            "([bold]logflume down[/] stops them; [bold]logflume gateway[/] serves the trace "
            "above again)"
        )


async def _play(
    settings: Settings,
    opts: DemoOptions,
    console: Console,
    conn: asyncpg.Connection,
    plan: Plan,
    emitter: Emitter,
    state: DemoState,
    stop: asyncio.Event,
    interrupted: asyncio.Event,
    sup_task: asyncio.Task[int],
) -> bool:
    """Emit while showing the live view; True once the pipeline drained."""
    emit_task = asyncio.create_task(emitter.run(plan, opts.rate, stop))
    drain = Drain()
    flushed = False
    deadline: float | None = None
    next_line = time.monotonic() + _LINE_EVERY_S
    state.phase = "emitting"
    async with LagReader(settings) as reader:
        with Live(live_view(state), console=console, refresh_per_second=4) as live:
            while not interrupted.is_set():
                if sup_task.done():
                    state.note("the pipeline stopped: a stage kept failing")
                    break
                state.tick()
                state.sdk = emitter.client.stats()
                snap: Snapshot | None = None
                try:
                    snap = await snapshot(reader, conn, settings, plan.project, plan.run_id)
                    state.snap = snap
                except (KafkaError, OSError, TimeoutError) as exc:
                    state.note(f"lag not readable yet ({type(exc).__name__})")
                if emit_task.done() and not flushed:
                    await emit_task
                    state.phase = "flushing the SDK"
                    live.update(live_view(state))
                    await emitter.client.aflush(60)
                    flushed = True
                    state.phase = "draining"
                    deadline = time.monotonic() + opts.drain_timeout_s
                    state.sdk = emitter.client.stats()
                elif flushed and snap is not None and drain.update(snap):
                    state.phase = "drained"
                    state.drained_at = time.monotonic()
                    live.update(live_view(state))
                    return True
                if deadline is not None and time.monotonic() > deadline:
                    state.phase = f"not drained after {opts.drain_timeout_s:.0f}s"
                    live.update(live_view(state))
                    return False
                live.update(live_view(state))
                if not console.is_terminal and time.monotonic() >= next_line:
                    console.print(status_line(state), soft_wrap=True)  # logs, CI: no live view
                    next_line = time.monotonic() + _LINE_EVERY_S
                await asyncio.sleep(_POLL_S)
    if not emit_task.done():
        emit_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await emit_task
    return False


def _keep_key(settings: Settings, key: str) -> Path:
    """The demo's API key, in a file only its owner reads: a key is never printed (a
    terminal's output ends up in CI logs and pasted issues)."""
    path = settings.home.expanduser().resolve() / "demo-api-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file left by an older run keeps its mode otherwise
        os.write(fd, key.encode())
    finally:
        os.close(fd)
    return path


async def _summary(
    settings: Settings,
    console: Console,
    conn: asyncpg.Connection,
    plan: Plan,
    key: str,
    state: DemoState,
    drained: bool,
    gateway: GatewaySettings,
    summary_json: Path | None,
) -> int:
    stored = await read_totals(conn, plan.project, plan.run_id)
    rows = compare(plan.expected, stored)
    ok = drained and all(r.ok for r in rows)
    console.print(summary_table(rows, state))
    trace_id = plan.trace_ids[0]
    url = f"http://{gateway.host}:{gateway.port}/traces/{trace_id}"
    status, body = await _trace_example(url, key)
    console.print(f"\nopen a trace: [bold]GET {url}[/]", soft_wrap=True)
    key_file = _keep_key(settings, key)
    console.print(
        f'  curl -s -H "X-API-KEY: $(cat {escape(shlex.quote(str(key_file)))})" {url}',
        soft_wrap=True,
        highlight=False,
    )
    if status == 200 and isinstance(body, dict):
        totals = body.get("totals") or {}
        console.print(f"  (answered 200: {escape(json.dumps(totals)[:200])})", soft_wrap=True)
    else:
        console.print(f"  [yellow](the gateway answered {status or 'nothing'})[/]")
    verdict = "[bold green]all totals match[/]" if ok else "[bold red]totals do not match[/]"
    if not drained:
        verdict += " [red](the pipeline did not drain in time)[/]"
    console.print(verdict)
    if summary_json is not None:
        text = json.dumps(
            {
                "run_id": plan.run_id,
                "project": plan.project,
                "drained": drained,
                "match": ok,
                "expected": plan.expected.as_dict(),
                "stored": stored.as_dict(),
                "trace_url": url,
                "trace_status": status,
                "rejected_by_sdk": state.sdk.dropped.get("invalid", 0) if state.sdk else None,
            },
            indent=2,
        )
        await asyncio.to_thread(summary_json.write_text, text)
    return 0 if ok else EXIT_MISMATCH
