"""Helpers of the tests that run the whole pipeline as ``logflume`` subprocesses: a
database and topics of one's own, the environment that points the CLI at them, free
ports, the children of a process, and Prometheus text parsing."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from kernel.settings import Settings
from tests.services import REPO_ROOT, Services, scratch_environment

PARTITIONS = 4
FAST_WORKER = {  # a killed or restarted worker's partitions move on quickly
    "LOGFLUME_PROCESSOR_SESSION_TIMEOUT_S": "6",
    "LOGFLUME_PROCESSOR_HEARTBEAT_INTERVAL_S": "1",
    "LOGFLUME_PROCESSOR_COMMIT_INTERVAL_S": "1",
}


@contextlib.asynccontextmanager
async def own_pipeline(services: Services, tag: str) -> AsyncIterator[Settings]:
    suffix = uuid.uuid4().hex[:8]
    async with scratch_environment(
        services, f"lf_{tag}_{suffix}", topic_prefix=f"lf-{tag}-{suffix}",
        partitions=PARTITIONS, sink_group=f"lf-{tag}-{suffix}-sink",
    ) as settings:  # fmt: skip
        yield settings


def cli_env(settings: Settings, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``logflume`` subprocess working on ``settings``' topics and
    database (nothing else inherited from the caller's LOGFLUME_* variables)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOGFLUME_")}
    return {
        **base,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DATABASE_URL": settings.dsn,
        "LOGFLUME_TOPIC_PREFIX": settings.topic_prefix,
        "LOGFLUME_PARTITIONS": str(settings.partitions),
        "LOGFLUME_SINK_GROUP": settings.sink_group,
        "LOGFLUME_SINK_LINGER_MS": "50",
        "LOGFLUME_HOME": str(home),
        **FAST_WORKER,
        **extra,
    }


def spawn_run(env: dict[str, str], log: Path, *options: str) -> subprocess.Popen[bytes]:
    """``logflume run`` (stop timeout 20 s, then ``options``), its output to ``log``."""
    with log.open("wb") as out:
        command = [sys.executable, "-m", "logflume", "run", "--stop-timeout", "20", *options]
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_base_port(offsets: tuple[int, ...] = (10, 20)) -> int:
    """A base port whose role ports (base + offsets) are free too."""
    for _ in range(50):
        base = free_port()
        if base + max(offsets) > 65535:
            continue
        try:
            for offset in offsets:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free base port")


def children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid``: pid -> command line."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            fields = text.rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        found[int(stat.parent.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total
