"""The ``logflume demo`` command: options only; the session (:mod:`logflume.demo.session`)
is imported when the command runs, so that every other command starts without loading
the gateway, the SDK and the workload."""

from __future__ import annotations

from pathlib import Path

import click

from kernel.settings import Settings
from logflume.console import console, run

__all__ = ["demo"]


@click.command()
@click.option(
    "--events",
    default=20_000,
    show_default=True,
    type=click.IntRange(1),
    help="About this many events in all.",
)
@click.option(
    "--rate",
    default=2_000.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Events per second to emit.",
)
@click.option(
    "--duration",
    default=None,
    type=click.FloatRange(1),
    help="Emit for this many seconds instead (events = rate x duration).",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the workload.")
@click.option("--project", default=None, help="Project of the events [default demo-<run id>].")
@click.option("--processors", default=1, show_default=True, type=click.IntRange(1, 10))
@click.option("--sinks", default=1, show_default=True, type=click.IntRange(1, 10))
@click.option(
    "--drain-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds to wait for the pipeline to drain after the last event.",
)
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the expected and stored totals to this file.",
)
@click.pass_obj
def demo(
    settings: Settings,
    events: int,
    rate: float,
    duration: float | None,
    seed: int,
    project: str | None,
    processors: int,
    sinks: int,
    drain_timeout: float,
    summary_json: Path | None,
) -> None:
    """Run the pipeline on a synthetic customer-support workload and check the totals."""
    from logflume.demo.session import DemoOptions, run_demo

    if duration is not None:
        events = max(1, int(rate * duration))
    opts = DemoOptions(events, rate, seed, project, processors, sinks, drain_timeout, summary_json)
    raise SystemExit(run(run_demo(settings, opts, console)))
