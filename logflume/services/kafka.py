"""A local Apache Kafka run from the jars: one node or a cluster of several, each node a
KRaft broker and controller at once.

Node 1 lives under ``<home>/kafka``, node N under ``<home>/kafka-N``: ``server.properties``,
``log4j.properties``, ``data/`` (the log dirs and KRaft metadata), ``logs/server.log`` (the
broker's own log), ``broker.log`` (the JVM's stdout/stderr) and ``broker.pid``. The jars
are in ``<home>/kafka/libs`` (fetched once by Maven from the packaged ``pom.xml``), and
``<home>/kafka/cluster.properties`` records the cluster id and node count that ``up``
formatted, so that later commands find every node. ``stop`` only ever signals the pid
written by ``start``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shlex
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kernel.settings import Settings
from kernel.topics import INDEX_BYTES, kafka_answers, min_insync_replicas, replication
from logflume.services.prerequisites import (
    ServiceError,
    ensure_port_free,
    require_java,
    require_maven,
    tail_file,
)

__all__ = ["MAX_NODES", "KafkaPaths", "LocalKafka", "local_nodes", "nodes_on_disk"]

log = logging.getLogger(__name__)

_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
# Brokers started by this process (the CLI exits right away; a test session stops them).
_children: dict[int, subprocess.Popen[bytes]] = {}


MAX_NODES = 9


@dataclass(frozen=True, slots=True)
class KafkaPaths:
    root: Path
    shared: Path  # node 1's folder: the jars and the cluster file

    @property
    def libs(self) -> Path:
        return self.shared / "libs"

    @property
    def cluster_file(self) -> Path:
        return self.shared / "cluster.properties"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j.properties"

    @property
    def console_log(self) -> Path:
        return self.root / "broker.log"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"


class LocalKafka:
    """One node of the cluster that ``logflume up`` starts and ``logflume down`` stops."""

    def __init__(self, settings: Settings, node: int = 1) -> None:
        self.settings = settings
        self.node = node
        home = settings.home.expanduser().resolve()
        folder = "kafka" if node == 1 else f"kafka-{node}"
        self.paths = KafkaPaths(home / folder, home / "kafka")
        self._started_at = 0.0

    @property
    def port(self) -> int:
        return self._ports()[0]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ports(self) -> tuple[int, int]:
        return self.settings.kafka_node_port(self.node)

    # -- state -----------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The pid of our running broker, or None (a stale pid file counts as not running)."""
        pid = _read_pid_file(self.paths.pid_file)
        if pid is None or not _is_alive(pid):
            return None
        if not _cmdline_contains(pid, _MAIN_CLASS, str(self.paths.config)):
            return None  # The pid was reused by an unrelated process: not ours.
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def running_address(self) -> str | None:
        """The address the broker was started with (from ``server.properties``)."""
        try:
            lines = self.paths.config.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        for line in lines:
            key, _, value = line.partition("=")
            if key.strip() == "advertised.listeners":
                return value.strip().removeprefix("PLAINTEXT://")
        return None

    def jars_present(self) -> bool:
        return self.paths.libs.is_dir() and any(self.paths.libs.glob("kafka_2.13-*.jar"))

    # -- preparation -----------------------------------------------------------------------

    def ensure_jars(self) -> None:
        """Fetch the broker jars into ``libs/`` with Maven, once."""
        if self.jars_present():
            return
        mvn = require_maven()
        self.paths.libs.mkdir(parents=True, exist_ok=True)
        with resources.as_file(
            resources.files("logflume").joinpath("services/maven/pom.xml")
        ) as pom:
            log.info("fetching the Kafka broker jars with Maven into %s", self.paths.libs)
            proc = subprocess.run(
                [
                    str(mvn),
                    "-q",
                    "-B",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={self.paths.libs}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        if proc.returncode != 0 or not self.jars_present():
            detail = _last_lines(proc.stdout + proc.stderr, 15)
            raise ServiceError(f"Maven could not fetch the Kafka jars:\n{detail}")

    def write_config(self) -> None:
        """(Re)write ``server.properties`` and ``log4j.properties`` from the settings."""
        s = self.settings
        ctl = f"127.0.0.1:{self._ports()[1]}"
        voters = ",".join(
            f"{n}@127.0.0.1:{c}" for n, (_, c) in enumerate(s.kafka_node_ports(), start=1)
        )
        # Internal topics (consumer offsets, transactions) replicated like the pipeline's.
        replicas = replication(s, None)  # a local cluster: its size is known
        insync = str(min_insync_replicas(replicas))
        props = {
            "node.id": str(self.node),
            "process.roles": "broker,controller",
            "listeners": f"PLAINTEXT://{self.address},CONTROLLER://{ctl}",
            "advertised.listeners": f"PLAINTEXT://{self.address}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": voters,
            "log.dirs": str(self.paths.data),
            "num.partitions": str(s.partitions),
            "default.replication.factor": str(replicas),
            "min.insync.replicas": insync,
            "offsets.topic.replication.factor": str(replicas),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": insync,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "message.max.bytes": str(s.max_record_bytes),
            # The internal topics' index files as small as logflume's own (kernel.topics).
            "log.index.size.max.bytes": str(INDEX_BYTES),
        }
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        header = "# Written by `logflume up` on every start; edit the settings, not this file.\n"
        self.paths.config.write_text(
            header + "".join(f"{k}={_escape(v)}\n" for k, v in props.items()), encoding="utf-8"
        )
        self.paths.log4j.write_text(_LOG4J.format(file=_escape(str(self.paths.server_log))))

    def cluster_id(self) -> str:
        """The id every node of this home's cluster is formatted with (made once), after
        checking that the cluster was formatted with as many nodes as the settings ask."""
        recorded = _read_properties(self.paths.cluster_file)
        wanted = self.settings.local_brokers
        formatted = (self.paths.shared / "data" / "meta.properties").exists()
        brokers = int(recorded.get("brokers", "1")) if (recorded or formatted) else wanted
        if brokers != wanted:
            raise ServiceError(
                f"the local Kafka in {self.paths.shared.parent} was formatted as {brokers} "
                f"broker(s), not {wanted}; use another LOGFLUME_HOME, or `logflume down` and "
                f"delete its kafka*/data folders to start a new cluster"
            )
        if "cluster.id" in recorded:
            return recorded["cluster.id"]
        cluster = (
            _read_properties(self.paths.shared / "data" / "meta.properties").get("cluster.id")
            or base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        )
        self.paths.shared.mkdir(parents=True, exist_ok=True)
        self.paths.cluster_file.write_text(
            f"# Written by `logflume up` when it formatted the cluster.\n"
            f"cluster.id={cluster}\nbrokers={wanted}\n",
            encoding="utf-8",
        )
        return cluster

    def format_storage(self, java: Path) -> None:
        """Format the KRaft storage once (only while ``data/meta.properties`` is absent)."""
        cluster_id = self.cluster_id()
        if (self.paths.data / "meta.properties").exists():
            return
        log.info("formatting the KRaft storage in %s", self.paths.data)
        proc = subprocess.run(
            [
                *self._java_command(java),
                _STORAGE_TOOL,
                "format",
                # One argument with "=": a base64url id may start with "-", which argparse
                # would take for an option ("--cluster-id: expected one argument").
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.paths.config),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.paths.root,
        )
        if proc.returncode != 0:
            detail = _last_lines(proc.stdout + proc.stderr, 15)
            raise ServiceError(f"formatting the Kafka storage failed:\n{detail}")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> int:
        """Prepare and launch the broker detached; returns its pid (does not wait for it)."""
        running = self.pid()
        if running is not None:
            return running
        java = require_java()
        ensure_port_free(self.port, "Kafka", "LOGFLUME_KAFKA_PORT")
        ensure_port_free(self._ports()[1], "the KRaft controller", "LOGFLUME_KAFKA_CONTROLLER_PORT")
        self.ensure_jars()
        self.write_config()
        self.format_storage(java)
        command = [*self._java_command(java), _MAIN_CLASS, str(self.paths.config)]
        self._started_at = time.time()
        with self.paths.console_log.open("wb") as out:  # this run's JVM output only
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.paths.root,
                start_new_session=True,
                close_fds=True,
            )
        _children[proc.pid] = proc  # keep it referenced so that it can be reaped
        _write_pid_file(self.paths.pid_file, proc.pid)
        log.info("started Kafka node %d (pid %d) on %s", self.node, proc.pid, self.address)
        return proc.pid

    async def wait_until_ready(self, pid: int) -> None:
        """Wait for the broker to answer; stop it and raise with its log tail if it does not."""
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while True:
            if not _is_alive(pid):
                _reap(pid)
                self._remove_pid_file(pid)
                raise ServiceError(f"the Kafka broker exited during startup{self._log_tail()}")
            if await kafka_answers(self.address, timeout_s=5.0):
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ServiceError(
                    f"the Kafka broker did not answer on {self.address} within "
                    f"{self.settings.startup_timeout_s:.0f}s{self._log_tail()}"
                )
            await asyncio.sleep(0.5)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM our broker (SIGKILL after ``timeout_s``); its pid, or None if not running."""
        pid = self.pid()
        if pid is None:
            if self.paths.pid_file.exists():
                self.paths.pid_file.unlink()  # stale: the process is gone
            return None
        log.info("stopping the Kafka broker (pid %d)", pid)
        _terminate(pid, timeout_s)
        self._remove_pid_file(pid)
        return pid

    # -- helpers ---------------------------------------------------------------------------

    def _java_command(self, java: Path) -> list[str]:
        return [
            str(java),
            f"-Xmx{self.settings.kafka_heap}",
            *shlex.split(self.settings.kafka_jvm_options),
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.paths.logs}",
            f"-Dlog4j.configuration={self.paths.log4j.as_uri()}",
            "-cp",
            f"{self.paths.libs}{os.sep}*",
        ]

    def _remove_pid_file(self, pid: int) -> None:
        if _read_pid_file(self.paths.pid_file) == pid:
            self.paths.pid_file.unlink(missing_ok=True)

    def _log_tail(self) -> str:
        parts = []
        for path in (self.paths.console_log, self.paths.server_log):
            try:
                if path.stat().st_mtime < self._started_at:
                    continue  # written by an earlier run
            except OSError:
                continue
            tail = tail_file(path, 20)
            if tail:
                parts.append(f"\n--- last lines of {path} ---\n{tail}")
        return "".join(parts)


def local_nodes(settings: Settings) -> list[LocalKafka]:
    """The nodes of the local cluster the settings describe."""
    return [LocalKafka(settings, node) for node in range(1, settings.local_brokers + 1)]


def nodes_on_disk(settings: Settings) -> list[LocalKafka]:
    """Every node with a folder in the home (what ``down`` must stop, however many the
    settings name now)."""
    found = [LocalKafka(settings, node) for node in range(1, MAX_NODES + 1)]
    return [n for n in found if n.node == 1 or n.paths.root.is_dir()]


def _read_properties(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in lines if not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, _, value in pairs if key.strip()}


def _escape(value: str) -> str:
    """Escape a value for a Java .properties file."""
    return value.replace("\\", "\\\\")


_LOG4J = """\
# Written by `logflume up`: the broker logs to a file, not to the console.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={file}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.state.change.logger=WARN
"""


# -- process helpers (only ever applied to the pid in our own pid file) ------------------------


def _read_pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_pid_file(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def _is_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cmdline_contains(pid: int, *parts: str) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return True  # no procfs: the pid file is all we have
    return all(part in args for part in parts)


def _reap(pid: int) -> None:
    """Collect the exit status when the broker is our own child (started in this process)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not _is_alive(pid):
                return
            time.sleep(0.2)
        if sig == signal.SIGTERM:
            log.warning(
                "the Kafka broker (pid %d) ignored SIGTERM for %.0fs; killing it", pid, timeout_s
            )
    raise ServiceError(f"the Kafka broker (pid {pid}) survived SIGKILL")


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.strip().splitlines()[-count:])
