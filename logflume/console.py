"""What every ``logflume`` command shares: the consoles, one red line for a known failure,
and :func:`run` for a command's coroutine. The commands' modules import this one, never
:mod:`logflume.cli`, which imports them all."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import asyncpg
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape

from kernel.errors import ServiceError
from sinks.migrations import MigrationError

__all__ = ["EXPECTED_ERRORS", "console", "err_console", "fail", "run"]

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
