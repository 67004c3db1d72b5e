"""The demo's screens: the live view (rich ``Live``) and the closing summary table.

The live view is rebuilt from a :class:`DemoState` on every refresh; nothing in here talks
to Kafka or PostgreSQL.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from producers.sdk import SDKStats

from .emit import EmitProgress
from .observe import Snapshot
from .workload import Plan, Totals

__all__ = [
    "COST_TOLERANCE",
    "DemoState",
    "Row",
    "compare",
    "live_view",
    "status_line",
    "summary_table",
]

COST_TOLERANCE = Decimal("0.000001")  # members are stored to 1e-10 $; sums are exact beyond


@dataclass(slots=True)
class DemoState:
    """Everything the live view shows; updated by the demo's loop."""

    plan: Plan
    progress: EmitProgress
    phase: str = "starting"
    sdk: SDKStats | None = None
    snap: Snapshot | None = None
    events_per_s: float = 0.0
    drained_at: float = 0.0
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=4))
    _last: tuple[float, int] = (0.0, 0)

    def note(self, message: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {message}")

    def tick(self) -> None:
        """Update the emit rate (over the last refresh interval)."""
        now, events = time.monotonic(), self.progress.events
        last_at, last_events = self._last
        if last_at and now > last_at:
            self.events_per_s = (events - last_events) / (now - last_at)
        self._last = (now, events)


def _money(value: Decimal) -> str:
    return f"${value:,.6f}"


def live_view(state: DemoState) -> RenderableType:
    plan, progress = state.plan, state.progress
    head = Table.grid(padding=(0, 2))
    head.add_row(
        Text(f"phase: {state.phase}", style="bold cyan"),
        f"emitted {progress.events:,}/{plan.events:,} events",
        f"{state.events_per_s:,.0f} events/s",
    )
    if state.sdk is not None:
        s = state.sdk
        head.add_row(
            f"SDK sent {s.sent:,}",
            f"rejected {s.dropped.get('invalid', 0):,} (invalid)",
            f"spooled {s.spooled:,}, queued {s.queued:,}",
        )

    lag = Table(title="lag per stage (records)", expand=False, title_justify="left")
    for stage in ("entities", "traces", "groups", "sink"):
        lag.add_column(stage, justify="right")
    lags = state.snap.lags if state.snap is not None else None
    lag.add_row(
        *(f"{lags.get(k, 0):,}" if lags else "-" for k in ("entities", "traces", "groups", "sink"))
    )

    stored = Table(title="in PostgreSQL (this run)", title_justify="left")
    for name in ("traces", "generations", "logs", "tokens", "cost", "dead letters"):
        stored.add_column(name, justify="right")
    t = state.snap.totals if state.snap is not None else None
    e = plan.expected
    if t is not None:
        stored.add_row(
            f"{t.traces:,}/{e.traces:,}",
            f"{t.generations:,}/{e.generations:,}",
            f"{t.logs:,}/{e.logs:,}",
            f"{t.tokens:,}",
            _money(t.cost),
            f"{t.dead_letters:,}/{e.dead_letters:,}",
        )
    notes = Text("\n".join(state.notes), style="dim")
    return Panel(Group(head, lag, stored, notes), title=f"logflume demo · run {plan.run_id}")


def status_line(state: DemoState) -> str:
    """The live view in one line, for a console that is not a terminal."""
    snap = state.snap
    lags = ", ".join(f"{k} {v:,}" for k, v in snap.lags.items()) if snap and snap.lags else "-"
    stored = ""
    if snap is not None:
        t = snap.totals
        stored = f"; stored {t.traces:,} traces, {t.tokens:,} tokens, {_money(t.cost)}"
    return (
        f"({state.phase}) emitted {state.progress.events:,}/{state.plan.events:,} "
        f"({state.events_per_s:,.0f}/s); lag {lags}{stored}"
    )


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    expected: str
    stored: str
    ok: bool


def compare(expected: Totals, stored: Totals) -> list[Row]:
    """Expected (what the demo emitted, valid events only) against stored, per total."""
    rows = [
        Row(name, f"{a:,}", f"{b:,}", a == b)
        for name, a, b in (
            ("traces", expected.traces, stored.traces),
            ("generations", expected.generations, stored.generations),
            ("logs", expected.logs, stored.logs),
            ("tokens", expected.tokens, stored.tokens),
            ("dead letters", expected.dead_letters, stored.dead_letters),
        )
    ]
    cost_ok = abs(expected.cost - stored.cost) <= COST_TOLERANCE
    rows.insert(4, Row("cost (USD)", _money(expected.cost), _money(stored.cost), cost_ok))
    return rows


def summary_table(rows: list[Row], state: DemoState) -> Table:
    plan, sdk = state.plan, state.sdk
    table = Table(
        title=f"demo summary · project {plan.project}",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("total")
    table.add_column("emitted (valid)", justify="right")
    table.add_column("in PostgreSQL", justify="right")
    table.add_column("", justify="center")
    for row in rows:
        mark = "[green]✓ match[/]" if row.ok else "[bold red]✗ mismatch[/]"
        table.add_row(row.name, row.expected, row.stored, mark)
    rejected = sdk.dropped.get("invalid", 0) if sdk is not None else 0
    table.caption = (
        f"{plan.events:,} events emitted: {plan.duplicates} duplicates, {plan.retries} retries, "
        f"{plan.failed_generations} failed generations, {plan.tool_calls} tool calls, "
        f"{plan.updates} updates by reference_id; {rejected} invalid calls rejected by the SDK "
        f"(planned {plan.rejected_by_sdk})"
    )
    progress = state.progress
    if progress.done and progress.finished > progress.started:
        seconds = progress.finished - progress.started
        table.caption += f"; emitted in {seconds:.1f} s ({progress.events / seconds:,.0f} events/s)"
        if state.drained_at:
            table.caption += f", drain confirmed {state.drained_at - progress.finished:.1f} s later"
    return table
