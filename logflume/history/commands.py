"""The ``replay``, ``export``, ``import`` and ``verify`` commands (registered by
``logflume.cli``): options, progress bars and reports around ``logflume.history``."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from kernel.settings import Settings, redact_dsn
from logflume.console import console, err_console, fail, run

from .archive import ArchiveError, export_archive, import_archive
from .replay import Replay, ReplayProgress
from .shards import ShardError
from .verify import VerifyResult, verify
from .window import EARLIEST, Window, parse_time

__all__ = ["COMMANDS"]


def _time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text, option)
    except ValueError as exc:
        fail(str(exc))


def _progress() -> Progress:
    """A bar in units of raw records (known up front) with events, rate, ETA and lag."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records · {task.fields[events]:,} events · {task.fields[rate]:,.0f} ev/s"),
        TextColumn("· lag {task.fields[lag]:,}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


class _Bar:
    """Feeds a progress bar from the engines' callbacks."""

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress = progress
        self.task: TaskID = progress.add_task(description, total=None, events=0, rate=0.0, lag=0)
        self.started = time.perf_counter()

    def window(self, window: Window) -> None:
        self.progress.update(self.task, total=window.records, lag=window.records)

    def update(self, done: int, events: int, lag: int) -> None:
        rate = events / max(1e-9, time.perf_counter() - self.started)
        self.progress.update(self.task, completed=done, events=events, rate=rate, lag=lag)


async def _until_signalled(work: Any, stop: Callable[[], None]) -> Any:
    """Run ``work`` with SIGINT / SIGTERM asking it to stop cleanly."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    try:
        return await work
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@click.command()
@click.option(
    "--from",
    "since",
    default=EARLIEST,
    show_default=True,
    help="'earliest' or an ISO 8601 time with a timezone: the first raw records to replay.",
)
@click.option("--until", default=None, help="ISO 8601 time: stop before the records from then.")
@click.option(
    "--database-url", default=None, help="Target database (created if missing); default: live."
)
@click.option(
    "--batch-values",
    default=50_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Stage outputs per database transaction (rows are coalesced within one).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=0, max=64),
    help="Processes running stage 1 beside this one (0: all in this process).",
)
@click.pass_obj
def replay(
    settings: Settings,
    since: str,
    until: str | None,
    database_url: str | None,
    batch_values: int,
    workers: int,
) -> None:
    """Re-run the stages over the raw topic into a database, without touching the live
    pipeline (no consumer group, nothing produced). Safe to run again after an interruption."""
    start, end = _time(since, "--from"), _time(until, "--until")
    dsn = database_url or settings.dsn
    err_console.print(f"replaying {settings.topics.events} into {escape(redact_dsn(dsn))}")
    with _progress() as progress:
        bar = _Bar(progress, "replay")

        def on_progress(p: ReplayProgress) -> None:
            bar.update(p.records_done, p.events_done, p.lag)

        engine = Replay(
            settings,
            dsn,
            since=start,
            until=end,
            batch_values=batch_values,
            workers=workers,
            on_progress=on_progress,
            on_window=bar.window,
        )
        try:
            report = run(_until_signalled(engine.run(), engine.stop))
        except (ValueError, ShardError) as exc:
            fail(str(exc))
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(report.table_rows.items())) or "none"
    console.print(
        f"replayed {report.records:,} records ({report.events:,} events) in "
        f"{report.seconds:.1f}s: {report.events_per_s:,.0f} events/s; "
        f"{report.outputs:,} stage outputs -> {report.rows:,} row upserts ({rows}); "
        f"{report.dead_letters:,} dead letters",
        soft_wrap=True,
    )
    if report.interrupted:
        err_console.print(
            "[yellow]interrupted: run the same command again to finish "
            "(it rebuilds the state and converges to the same tables)[/]"
        )
        raise SystemExit(130)


@click.command("verify")
@click.argument("url_a")
@click.argument("url_b")
@click.option("--show", default=5, show_default=True, help="Differing rows to print per table.")
@click.pass_obj
def verify_command(settings: Settings, url_a: str, url_b: str, show: int) -> None:
    """Compare the logical content of every pipeline table of two databases; exit 0 only
    when equal, else print the first differing rows and exit 1."""
    result: VerifyResult = run(verify(url_a, url_b, events_topic=settings.topics.events, show=show))
    table = Table("table", "rows A", "rows B", "checksum A", "checksum B", "")
    for t in result.tables:
        mark = "[green]equal[/]" if t.equal else f"[red]{t.differing_rows:,} rows differ[/]"
        table.add_row(
            t.table, f"{t.rows_a:,}", f"{t.rows_b:,}", t.checksum_a[:16], t.checksum_b[:16], mark
        )
    console.print(f"A: {escape(redact_dsn(url_a))}\nB: {escape(redact_dsn(url_b))}")
    console.print(table)
    if result.equal:
        console.print("[green]identical logical content[/]")
        return
    for t in result.tables:
        for diff in t.differences:
            where = f" (only in {diff.only_in})" if diff.only_in else ""
            console.print(f"[bold]{t.table}[/] {escape(diff.key)}{where}", soft_wrap=True)
            for column, (a, b) in diff.columns.items():
                console.print(
                    f"    {column}: A={escape(_short(a))}  B={escape(_short(b))}", soft_wrap=True
                )
    err_console.print("[bold red]error:[/] [red]the databases differ[/]")
    raise SystemExit(1)


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@click.command("export")
@click.option("--since", default=EARLIEST, show_default=True, help="'earliest' or ISO 8601 time.")
@click.option("--until", default=None, help="ISO 8601 time: stop before the records from then.")
@click.option(
    "-o",
    "--output",
    "path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The archive to write (JSON lines, zstd).",
)
@click.pass_obj
def export_command(settings: Settings, since: str, until: str | None, path: Path) -> None:
    """Write the raw events of a time window to a zstd-compressed JSON-lines archive."""
    start, end = _time(since, "--since"), _time(until, "--until")
    with _progress() as progress:
        bar = _Bar(progress, "export")
        try:
            report = run(
                export_archive(
                    settings,
                    path,
                    since=start,
                    until=end,
                    on_window=bar.window,
                    on_progress=bar.update,
                )
            )
        except (ArchiveError, ValueError) as exc:
            fail(str(exc))
    console.print(
        f"exported {report.events:,} events from {report.records:,} records to "
        f"{escape(str(path))} ({report.bytes:,} bytes)"
        + (
            f"; {report.unreadable:,} records were not JSON arrays (skipped)"
            if report.unreadable
            else ""
        )
        + (f"; {report.deleted:,} events of deleted entities left out" if report.deleted else ""),
        soft_wrap=True,
    )


@click.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def import_command(settings: Settings, path: Path) -> None:
    """Publish an archive's events back to the raw topic (same event_id and ts: importing
    twice changes nothing downstream)."""
    with _progress() as progress:
        bar = _Bar(progress, "import")
        try:
            report = run(import_archive(settings, path, on_progress=bar.update))
        except ArchiveError as exc:
            fail(str(exc))
    console.print(
        f"imported {report.events:,} events in {report.records:,} records to "
        f"{settings.topics.events}"
        + (
            f"; skipped {report.invalid:,} events the contract rejects (already dead letters)"
            if report.invalid
            else ""
        ),
        soft_wrap=True,
    )


COMMANDS = (replay, verify_command, export_command, import_command)
