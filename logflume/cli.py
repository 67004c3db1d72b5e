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
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import asyncpg
import click
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from logflume.services import manager
from logflume.services.prerequisites import ServiceError
from logflume.settings import Settings
from producers.contract import event_json_schema
from sinks.consumer import Sink
from sinks.migrations import MigrationError

__all__ = ["main", "run"]

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

# Failures that deserve one clear line, not a stack trace.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ServiceError,
    MigrationError,
    KafkaError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] [red]{escape(message)}[/]", soft_wrap=True)
    raise SystemExit(1)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine; expected failures print one red line and exit 1."""
    try:
        return asyncio.run(coro)
    except EXPECTED_ERRORS as exc:
        fail(str(exc) or type(exc).__name__)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """logflume: LLM-observability ingestion pipeline."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    logging.getLogger("aiokafka").setLevel(logging.INFO if verbose else logging.CRITICAL)
    try:
        ctx.obj = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"invalid settings: {problems}")


@main.command()
@click.pass_obj
def up(settings: Settings) -> None:
    """Start Kafka and PostgreSQL (or wait for external ones), migrate, create topics."""
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
@click.pass_obj
def sink(settings: Settings) -> None:
    """Consume the stage outputs and upsert them into PostgreSQL (Ctrl-C stops cleanly)."""
    run(_serve(Sink(settings)))


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
