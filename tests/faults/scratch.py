"""Services a fault test may stop and start: a Kafka broker (or a cluster of several, with
``kafka_brokers=3``) and a PostgreSQL cluster of its own, in a scratch ``LOGFLUME_HOME`` on
free ports, never the session's shared services.

The broker jars are linked from an existing home (the repository's ``.logflume`` or the
session's ``LOGFLUME_HOME``) when one has them, so that no Maven run is needed; otherwise
:class:`~logflume.services.kafka.LocalKafka` fetches them as ``logflume up`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.settings import Settings
from logflume.services import manager
from logflume.services.kafka import LocalKafka, local_nodes
from logflume.services.postgres import LocalPostgres
from tests.services import REPO_ROOT, base_settings

__all__ = ["ScratchServices", "scratch_services"]

# The fault suite's own ports (see the README's test section), below Linux's ephemeral range
# (32768-60999): a port there that was free when picked can be taken by any client's
# outgoing connection before a broker restarts on it ("Address already in use").
PORT_RANGE = (24000, 31999)


@dataclass
class ScratchServices:
    """The scratch broker(s) and cluster, with what it takes to restart each."""

    settings: Settings
    kafka: LocalKafka  # node 1
    postgres: LocalPostgres
    nodes: list[LocalKafka]

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    def kill_node(self, node_id: int) -> int:
        """SIGKILL one Kafka node (no controlled shutdown: its partitions' leaders move only
        once the controller sees it gone); its pid."""
        node = self.node(node_id)
        pid = node.pid()
        assert pid is not None, f"Kafka node {node_id} is not running"
        os.kill(pid, signal.SIGKILL)
        node.stop()  # reaps it and removes its pid file
        return pid

    async def start_node(self, node_id: int) -> None:
        node = self.node(node_id)
        pid = await asyncio.to_thread(node.start)
        await node.wait_until_ready(pid)

    async def restart_kafka(self, down_s: float) -> None:
        """SIGTERM the broker (a controlled shutdown), wait ``down_s``, start it again and
        wait until it answers; its data stays, so every topic and offset survives."""
        await asyncio.to_thread(self.kafka.stop)
        await asyncio.sleep(down_s)
        pid = await asyncio.to_thread(self.kafka.start)
        await self.kafka.wait_until_ready(pid)

    async def restart_postgres(self, down_s: float) -> None:
        """``pg_ctl stop -m fast`` (open connections are cut), wait, start again."""
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.postgres.start)


def _free_ports(count: int, rng: random.Random, nodes: int = 1) -> list[int]:
    """``count`` free base ports; with ``nodes`` > 1, base + 100 (N - 1) is free for each
    node N as well (a cluster's node ports, as ``Settings.kafka_node_ports`` places them)."""
    ports: list[int] = []
    taken: set[int] = set()
    while len(ports) < count:
        base = rng.randint(PORT_RANGE[0], PORT_RANGE[1] - 100 * (nodes - 1))
        wanted = {base + 100 * i for i in range(nodes)}
        if wanted & taken or not all(_port_free(port) for port in wanted):
            continue
        ports.append(base)
        taken |= wanted
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _new_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="lf-faults-"))
    home.chmod(0o755)
    _link_jars(home)
    return home


def _link_jars(home: Path) -> None:
    """Reuse the jars of a home that has them (they are large and fetched by Maven)."""
    for source in (base_settings().home, REPO_ROOT / ".logflume"):
        libs = source.expanduser().resolve() / "kafka" / "libs"
        if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
            (home / "kafka").mkdir(parents=True, exist_ok=True)
            (home / "kafka" / "libs").symlink_to(libs, target_is_directory=True)
            return


@contextlib.asynccontextmanager
async def scratch_services(**overrides: Any) -> AsyncIterator[ScratchServices]:
    """Start a broker and a cluster in a fresh home (``logflume up`` with settings of their
    own: migrations and topics included); both are stopped and the home removed at the
    end, whatever happened. The home is a short folder the ``postgres`` OS user can enter
    (pytest's ``tmp_path`` is closed to it, and a unix socket path is at most 107 bytes)."""
    nodes = int(overrides.get("kafka_brokers") or 1)
    kafka_port, controller_port, postgres_port = _free_ports(3, random.Random(), nodes)
    home = _new_home()
    settings = Settings(
        kafka_bootstrap_servers=None,  # never the environment's services
        database_url=None,
        home=home,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        postgres_port=postgres_port,
        kafka_heap="512m",
        **overrides,
    )
    keep = False  # a failed run's services, with LOGFLUME_KEEP_SCRATCH=1, to look into
    try:
        await manager.up(settings)
        cluster = local_nodes(settings)
        yield ScratchServices(settings, cluster[0], LocalPostgres(settings), cluster)
    except BaseException:
        keep = os.environ.get("LOGFLUME_KEEP_SCRATCH") == "1"
        raise
    finally:
        try:
            await manager.down(settings)
        finally:
            if keep:
                print(f"scratch services kept (stopped) in {home}: {settings!r}")
            else:
                shutil.rmtree(home, ignore_errors=True)


async def group_lag(settings: Settings) -> dict[str, int]:
    """Records not yet committed by each consumer group of the pipeline (the processors'
    and the sinks'), summed over their partitions: what tells a stall (lag left) from a
    wrong result (nothing left to read)."""
    from processors.app import app_id
    from tests.offsets import group_offsets

    topics = settings.topics.all()
    lags: dict[str, int] = {}
    for group in (app_id(settings), settings.sink_group):
        # Only the pipeline's own topics: changelogs are read by recovery, not committed.
        offsets = await group_offsets(settings, group, lambda tp: tp.topic in topics)
        lags[group] = sum(max(0, end - (done or 0)) for done, end in offsets.values())
    return lags
