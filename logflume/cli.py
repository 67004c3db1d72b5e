"""The ``logflume`` command: the services (``up``, ``down``, ``status``), ``migrate``, ``schema``.

The group callback builds the one :class:`Settings` of the process and passes it to the
commands through ``ctx.obj``. A new command is a function decorated with ``@main.command()``
and ``@click.pass_obj`` that calls :func:`run` on its coroutine; known failures (a missing
tool, a service that does not answer, a failed migration) become one red line and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any

import click
from pydantic import ValidationError
from rich.logging import RichHandler
from rich.markup import escape

from kernel.clients import pg_connect
from kernel.logs import json_handler
from kernel.runtime import tune_gc
from kernel.settings import GatewaySettings, Settings, export_for_children, settings_problems
from logflume.console import EXPECTED_ERRORS, console, err_console, fail, run
from logflume.demo.command import demo
from logflume.history.commands import COMMANDS
from logflume.runner import run_pipeline
from logflume.services import manager
from producers.contract import event_json_schema
from sinks.consumer import Sink
from sinks.metrics import instrument_sink

__all__ = ["main", "run"]


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="json: one JSON object per line [LOGFLUME_LOG_FORMAT, default text].",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool, log_format: str | None) -> None:
    """logflume: LLM-observability ingestion pipeline."""
    try:
        settings = Settings()
        if log_format is not None:
            settings = settings.model_copy(update={"log_format": log_format})
    except ValidationError as exc:
        fail(f"invalid settings: {settings_problems(exc)}")
    handler = (
        json_handler()
        if settings.log_format == "json"
        else RichHandler(console=err_console, show_path=False)
    )
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[handler],
    )
    logging.getLogger("aiokafka").setLevel(logging.INFO if verbose else logging.CRITICAL)
    ctx.obj = settings


@main.command()
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=None,
    help="Local Kafka nodes (KRaft); 3 replicates every topic 3 times with "
    "min.insync.replicas=2. Recorded in the home, so later commands find every node.",
)
@click.pass_obj
def up(settings: Settings, brokers: int | None) -> None:
    """Start Kafka and PostgreSQL (or wait for external ones), migrate, create topics."""
    if brokers is not None:
        settings = settings.model_copy(update={"kafka_brokers": brokers})
    report = run(manager.up(settings))
    for svc in report.services:
        _print_action(svc)
    db = "created" if report.database_created else "exists"
    migrations = ", ".join(report.migrations_applied) or "up to date"
    console.print(f"database: {db}; migrations: {escape(migrations)}", soft_wrap=True)
    topics = report.topics
    created = f"created {', '.join(topics.created)}" if topics.created else "all exist"
    console.print(f"topics ({settings.partitions} partitions): {escape(created)}", soft_wrap=True)


@main.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the local services that `up` started; external services are never touched."""
    report = run(manager.down(settings))
    for svc in report.services:
        _print_action(svc)


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Show where each service is and whether it answers (passwords are never shown)."""
    report = run(manager.status(settings))
    for svc in report.services:
        mode = "managed-local" if svc.managed else "external"
        if svc.answering:
            state = "[green]answering[/]"
        elif svc.running:
            state = "[yellow]running, not answering[/]"
        else:
            state = "[red]not running[/]" if svc.managed else "[red]not answering[/]"
        pid = f", pid {svc.pid}" if svc.pid is not None else ""
        detail = f" ({escape(svc.detail)})" if svc.detail else ""
        console.print(
            f"{svc.name:<9} {mode:<14} {escape(svc.where)}: {state}{pid}{detail}", soft_wrap=True
        )


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Apply the SQL migrations of sinks/migrations/ that are not yet recorded."""
    applied = run(manager.migrate(settings))
    console.print(f"migrations: {escape(', '.join(applied) or 'up to date')}", soft_wrap=True)


@main.command()
@click.option("--indent", default=2, show_default=True, help="Indentation of the JSON output.")
def schema(indent: int) -> None:
    """Print the JSON Schema of one event (the wire contract)."""
    click.echo(json.dumps(event_json_schema(), indent=indent or None))


@main.command()
@click.option(
    "--stages",
    default="entities,traces,groups",
    show_default=True,
    help="Comma-separated stages this worker runs.",
)
@click.pass_obj
def process(settings: Settings, stages: str) -> None:
    """Run a stream-processor worker; start several to share the partitions (Ctrl-C stops)."""
    from processors.worker import parse_stages, run_worker  # Faust loads only for this command

    try:
        chosen = parse_stages(stages)
    except ValueError as exc:
        fail(str(exc))
    try:
        run_worker(settings, stages=chosen)
    except EXPECTED_ERRORS as exc:
        fail(str(exc) or type(exc).__name__)


@main.command()
@click.pass_obj
def sink(settings: Settings) -> None:
    """Consume the stage outputs and upsert them into PostgreSQL (Ctrl-C stops cleanly)."""
    tune_gc()
    run(_serve(Sink(settings, on_batch=instrument_sink(settings))))


async def _serve(service: Sink) -> None:
    """Run a service until SIGINT / SIGTERM, then let it finish its current batch."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.stop)
    await service.run()


def _print_action(svc: manager.ServiceAction) -> None:
    mode = "local" if svc.managed else "external"
    pid = f" (pid {svc.pid})" if svc.pid is not None else ""
    colour = {"started": "green", "stopped": "yellow", "already running": "cyan"}.get(
        svc.action, "white"
    )
    console.print(
        f"{svc.name:<9} {mode:<8} {escape(svc.where)}: [{colour}]{svc.action}[/]{pid}",
        soft_wrap=True,
    )


# -- the gateway and its API keys -----------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Address to listen on [LOGFLUME_GATEWAY_HOST].")
@click.option("--port", type=int, default=None, help="Port [LOGFLUME_GATEWAY_PORT].")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes to run.")
@click.pass_obj
def gateway(settings: Settings, host: str | None, port: int | None, workers: int) -> None:
    """Serve the HTTP gateway (Humanloop- and Maxim-compatible, /v1/events, read API)."""
    import uvicorn

    from gateway import create_app

    # JSON logs: uvicorn's loggers propagate to the root handler instead of its own.
    log_config = None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    try:
        options = GatewaySettings.model_validate({**settings.gateway.model_dump(), **overrides})
    except ValidationError as exc:
        fail(f"invalid options: {settings_problems(exc)}")
    console.print(f"gateway on http://{options.host}:{options.port} (docs at /docs)")
    if workers > 1:  # each process builds its own app from the same environment
        export_for_children({f"LOGFLUME_GATEWAY_{k.upper()}": str(v) for k, v in overrides.items()})
        uvicorn.run(
            "gateway.server:app",
            host=options.host,
            port=options.port,
            workers=workers,
            access_log=False,
            log_level="warning",
            factory=True,
            log_config=log_config,
        )
        return
    app = create_app(settings, options)
    uvicorn.run(app, host=options.host, port=options.port, access_log=False, log_level="warning",
                log_config=log_config)  # fmt: skip


@main.command("delete")
@click.option("--project", required=True, help="The project of the entities.")
@click.option("--log", "log_ids", multiple=True, help="A log id (repeatable).")
@click.option("--reference-id", "reference_ids", multiple=True, help="A log reference id.")
@click.option("--trace", "trace_ids", multiple=True, help="A trace: every stored member.")
@click.option("--session", "session_ids", multiple=True, help="A session: all its traces, logs.")
@click.pass_obj
def delete_command(
    settings: Settings,
    project: str,
    log_ids: tuple[str, ...],
    reference_ids: tuple[str, ...],
    trace_ids: tuple[str, ...],
    session_ids: tuple[str, ...],
) -> None:
    """Delete logs, traces and sessions: rows, totals and processor state follow; raw
    events sent before stay in the raw topic until its retention ends."""
    from logflume.erase import erase
    from producers.sdk import SendFailure

    if not (log_ids or reference_ids or trace_ids or session_ids):
        fail("name at least one --log, --reference-id, --trace or --session")
    try:
        targets = run(erase(settings, project, log_ids=list(log_ids),
                            reference_ids=list(reference_ids), trace_ids=list(trace_ids),
                            session_ids=list(session_ids)))  # fmt: skip
    except (ValueError, SendFailure) as exc:
        fail(str(exc))
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(targets.counts().items()))
    console.print(f"published the deletion of {counts} in project {escape(project)}")


@main.group()
def keys() -> None:
    """API keys of the gateway (one project each; only a hash is stored)."""


@keys.command("create")
@click.option("--project", required=True, help="The project the key reads and writes.")
@click.option("--name", default=None, help="A label to tell keys apart.")
@click.pass_obj
def keys_create(settings: Settings, project: str, name: str | None) -> None:
    """Create a key and print it once (it cannot be shown again)."""
    from gateway.auth import create_key

    async def create() -> tuple[Any, str]:
        conn = await pg_connect(settings, timeout=10)
        try:
            return await create_key(conn, project, name)
        finally:
            await conn.close()

    try:
        record, key = run(create())
    except ValueError as exc:
        fail(str(exc))
    err_console.print(f"key {record.id} for project {escape(record.project)} (shown once):")
    click.echo(key)


@keys.command("list")
@click.option("--project", default=None, help="Only this project's keys.")
@click.pass_obj
def keys_list(settings: Settings, project: str | None) -> None:
    """List keys (id, project, first characters, created, revoked); never the keys."""
    from gateway.auth import list_keys

    async def listing() -> list[Any]:
        conn = await pg_connect(settings, timeout=10)
        try:
            return await list_keys(conn, project)
        finally:
            await conn.close()

    for k in run(listing()):
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        label = f" ({escape(k.name)})" if k.name else ""
        console.print(
            f"{k.id}  {escape(k.project)}  {k.prefix}…  {k.created_at:%Y-%m-%d}  {state}{label}",
            soft_wrap=True,
        )


@keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
def keys_revoke(settings: Settings, key_id: str) -> None:
    """Revoke a key by its id (gateways stop accepting it within their key cache TTL)."""
    from gateway.auth import revoke_key

    async def revoke() -> bool:
        conn = await pg_connect(settings, timeout=10)
        try:
            return await revoke_key(conn, key_id)
        finally:
            await conn.close()

    if not run(revoke()):
        fail(f"no active key {key_id}")
    console.print(f"revoked {key_id}")


# -- the whole pipeline: `run` (logflume/runner.py) and `demo` (logflume/demo/) ---------------
main.add_command(run_pipeline, name="run")
main.add_command(demo)


# -- replay, export, import, verify (logflume/history) --------------------------------------

for _command in COMMANDS:
    main.add_command(_command)
