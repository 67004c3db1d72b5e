"""Where a benchmark's CPU goes: CPU seconds per role (the workers, the sink, Kafka,
PostgreSQL, the benchmark itself), read from ``/proc`` before and after a phase.

    before = cpu_by_role(roles)
    ...  # the phase
    spent = cpu_spent(before, cpu_by_role(roles))  # role -> CPU seconds

A process is given a role by its pid (``roles``: the deployables the benchmark started),
else by its command line: ``kafka`` (the broker's JVM), ``postgres`` (the postmaster and
every backend), ``bench`` (this process); anything else is left out. Linux only: elsewhere
every figure is empty.

The broker's JIT compiler threads count apart, as ``kafka_jit``: for the first minutes
after a broker starts they take more CPU than its requests (19.5 of its first 36 CPU
seconds here, three short pipeline runs after ``logflume up``), a cost a broker that has
run for a while no longer pays, and which varies from run to run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


def _stat_seconds(stat: Path) -> float | None:
    """User + system CPU in a ``/proc`` ``stat`` file (a process's or one thread's), or None
    if it is gone."""
    try:
        text = stat.read_text()
    except OSError:
        return None
    # The command may hold spaces and parentheses: the fields start after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime (fields 14, 15)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of ``pid`` (all its threads), or None if it is gone."""
    return _stat_seconds(_PROC / str(pid) / "stat")


def _jit_seconds(pid: int) -> float:
    """CPU of a JVM's JIT compiler threads (``C1 CompilerThre…``, ``C2 CompilerThre…``)."""
    total = 0.0
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return total
    for task in tasks:
        try:
            compiler = (task / "comm").read_text().startswith(("C1 Compiler", "C2 Compiler"))
        except OSError:
            continue
        if compiler:
            total += _stat_seconds(task / "stat") or 0.0
    return total


def _role_of(pid: int, roles: Mapping[int, str]) -> str | None:
    if pid in roles:
        return roles[pid]
    if pid == os.getpid():
        return "bench"
    try:
        command = (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return None
    if b"kafka.Kafka" in command or b"kafka.server" in command:
        return "kafka"
    if command.startswith(b"postgres") or b"/postgres " in command or b"postgres:" in command:
        return "postgres"
    return None


def cpu_by_role(roles: Mapping[int, str]) -> dict[tuple[str, int], float]:
    """``(role, pid) -> CPU seconds so far`` for every process with a role."""
    found: dict[tuple[str, int], float] = {}
    if not _PROC.is_dir():
        return found
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        role = _role_of(pid, roles)
        if role is None:
            continue
        seconds = _cpu_seconds(pid)
        if seconds is None:
            continue
        if role == "kafka":
            jit = _jit_seconds(pid)
            found[("kafka_jit", pid)] = jit
            seconds -= jit
        found[(role, pid)] = seconds
    return found


def cpu_spent(
    before: Mapping[tuple[str, int], float], after: Mapping[tuple[str, int], float]
) -> dict[str, float]:
    """Role -> CPU seconds spent between two readings (a process started in between counts
    from zero; one that ended in between is lost, which a phase's deployables never do)."""
    spent: dict[str, float] = {}
    for (role, pid), seconds in after.items():
        spent[role] = spent.get(role, 0.0) + seconds - before.get((role, pid), 0.0)
    return dict(sorted(spent.items()))
