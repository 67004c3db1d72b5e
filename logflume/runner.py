"""``logflume run``: the gateway, the Faust workers and the sinks as one supervised group.

Each stage is the same program as its own command (``logflume gateway``, ``logflume
process``, ``logflume sink``) started as a child by :class:`~logflume.supervisor.Supervisor`;
production deployments run those commands under their own supervisor instead. Before
starting anything, ``run`` checks that Kafka and PostgreSQL answer, so that a missing
``logflume up`` is one clear line rather than children crash-looping.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from kernel.errors import ServiceError
from kernel.settings import Settings
from kernel.topics import kafka_answers
from logflume.console import console, run
from logflume.services.postgres import postgres_problem
from logflume.supervisor import ChildSpec, Supervisor, logflume_argv

__all__ = ["pipeline_specs", "preflight", "run_pipeline", "supervise"]

GATEWAY_ORDER, PROCESS_ORDER, SINK_ORDER = 0, 1, 2  # stop order: upstream first


def pipeline_specs(
    settings: Settings, *, processors: int = 1, sinks: int = 1, gateway: bool = True
) -> list[ChildSpec]:
    """The children of a pipeline. Settings given on the command line (the log format)
    reach them through the environment; each same-role child gets its metrics instance."""
    common = {"LOGFLUME_LOG_FORMAT": settings.log_format}
    specs: list[ChildSpec] = []
    if gateway:
        specs.append(ChildSpec("gateway", logflume_argv("gateway"), common, GATEWAY_ORDER))
    for i in range(processors):
        env = {**common, "LOGFLUME_METRICS_INSTANCE": str(i)}
        specs.append(ChildSpec(f"process-{i + 1}", logflume_argv("process"), env, PROCESS_ORDER))
    for i in range(sinks):
        env = {**common, "LOGFLUME_METRICS_INSTANCE": str(i)}
        specs.append(ChildSpec(f"sink-{i + 1}", logflume_argv("sink"), env, SINK_ORDER))
    return specs


async def preflight(settings: Settings, timeout_s: float = 5.0) -> None:
    """Raise one :class:`ServiceError` unless both Kafka and PostgreSQL answer."""
    problems = []
    if not await kafka_answers(settings.bootstrap_servers, timeout_s):
        problems.append(f"Kafka at {settings.bootstrap_servers} does not answer")
    problem = await postgres_problem(settings.dsn, timeout_s)
    if problem is not None:
        problems.append(f"PostgreSQL at {settings.redacted_dsn}: {problem}")
    if problems:
        raise ServiceError("; ".join(problems) + " (run `logflume up` first)")


async def supervise(supervisor: Supervisor) -> int:
    """Run the group until SIGINT / SIGTERM; the exit status."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, supervisor.stop)
    try:
        return await supervisor.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@click.command()
@click.option(
    "--processors",
    default=2,
    show_default=True,
    type=click.IntRange(0, 10),
    help="Faust workers (one consumer group; they share the partitions). Two fill a 2-core "
    "machine: 1.2-1.5x the events/s of one in bench/pipeline_bench.py (see the README).",
)
@click.option(
    "--sinks",
    default=1,
    show_default=True,
    type=click.IntRange(0, 10),
    help="Sink consumers (one consumer group).",
)
@click.option(
    "--gateway/--no-gateway", default=True, show_default=True, help="Serve the HTTP gateway too."
)
@click.option(
    "--stop-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds a stage may take to stop after SIGTERM before it is killed.",
)
@click.option(
    "--max-restarts",
    default=10,
    show_default=True,
    type=click.IntRange(0),
    help="Restarts of one stage within 5 minutes before the group gives up.",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write each stage's output to <dir>/<stage>.log instead of this terminal.",
)
@click.pass_obj
def run_pipeline(
    settings: Settings,
    processors: int,
    sinks: int,
    gateway: bool,
    stop_timeout: float,
    max_restarts: int,
    log_dir: Path | None,
) -> None:
    """Run the gateway, processors and sinks as one supervised group (Ctrl-C stops cleanly).

    A stage that dies is restarted with backoff; Ctrl-C or SIGTERM stops the gateway, then
    the processors, then the sinks (SIGTERM, then SIGKILL after --stop-timeout). Exit status
    0 after a requested stop, 1 if a stage kept failing or the services do not answer.
    """

    logging.getLogger("logflume.supervisor").setLevel(logging.INFO)  # starts, restarts, stops
    run(preflight(settings))
    specs = pipeline_specs(settings, processors=processors, sinks=sinks, gateway=gateway)
    if not specs:
        raise click.UsageError("nothing to run: every stage is off")
    supervisor = Supervisor(
        specs, stop_timeout_s=stop_timeout, max_restarts=max_restarts, log_dir=log_dir
    )
    names = ", ".join(s.name for s in specs)
    console.print(f"running {names}; Ctrl-C stops", soft_wrap=True)
    raise SystemExit(asyncio.run(supervise(supervisor)))
