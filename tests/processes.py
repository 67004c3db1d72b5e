"""The pipeline's deployables as real subprocesses, for the suites that need the whole thing
(fault, bad input) and for ``bench/pipeline_bench.py``.

A :class:`PipelineProcesses` starts Faust workers (``python -m processors.worker``) and
sinks (``python -m tests.sink_main``: what ``logflume sink`` runs) against one
:class:`~kernel.settings.Settings`, each with a log file of its own; it SIGKILLs one by
name (no goodbye to its consumer group, no flush: the crash the pipeline must survive) and,
like a process supervisor, restarts the ones that exited. Nothing here waits for results:
the callers poll Postgres.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kernel.settings import Settings
from tests.services import REPO_ROOT

__all__ = ["WORKER_ENV", "PipelineProcesses", "Process"]

Kind = Literal["worker", "sink"]

# The broker's group.min.session.timeout.ms is 6 s: the fastest a SIGKILLed member is noticed.
WORKER_ENV = {
    "LOGFLUME_PROCESSOR_SESSION_TIMEOUT_S": "6",
    "LOGFLUME_PROCESSOR_HEARTBEAT_INTERVAL_S": "1",
    "LOGFLUME_PROCESSOR_REBALANCE_TIMEOUT_S": "20",
    "LOGFLUME_PROCESSOR_COMMIT_INTERVAL_S": "1",
}
_SINK_MODULE = "tests.sink_main"


@dataclass
class Process:
    """One running deployable and where its output goes."""

    name: str
    kind: Kind
    command: list[str]
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None


@dataclass
class PipelineProcesses:
    """Workers and sinks of one pipeline (topics and database named by ``settings``)."""

    settings: Settings
    tmp: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    running: dict[str, Process] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)  # name -> times started
    kills: int = 0
    restarts_after_exit: int = 0

    def environment(self) -> dict[str, str]:
        """What every process gets: the services, topics, groups of ``settings``."""
        s = self.settings
        return {
            **os.environ,
            **WORKER_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": s.bootstrap_servers,
            "DATABASE_URL": s.dsn,
            "LOGFLUME_TOPIC_PREFIX": s.topic_prefix,
            "LOGFLUME_PARTITIONS": str(s.partitions),
            "LOGFLUME_MAX_EVENT_BYTES": str(s.max_event_bytes),
            "LOGFLUME_HOME": str(self.tmp / "home"),
            "LOGFLUME_SINK_GROUP": s.sink_group,
            "LOGFLUME_SINK_LINGER_MS": str(s.sink_linger_ms),
            "LOGFLUME_SINK_BATCH_VALUES": str(s.sink_batch_values),
            "LOGFLUME_SINK_RETRY_MAX_S": str(s.sink_retry_max_s),
            **self.extra_env,
        }

    def start_worker(self, name: str, stages: str = "entities,traces,groups") -> Process:
        command = [sys.executable, "-m", "processors.worker", "--stages", stages]
        return self._start(name, "worker", command)

    def start_sink(self, name: str, module: str = _SINK_MODULE) -> Process:
        """The sink, or another writer of the stage outputs run as ``python -m module``."""
        return self._start(name, "sink", [sys.executable, "-m", module])

    def _start(self, name: str, kind: Kind, command: list[str]) -> Process:
        assert name not in self.running, f"{name} already runs"
        self.starts[name] = self.starts.get(name, 0) + 1
        log = self.tmp / f"{kind}-{name}.{self.starts[name]}.log"
        env = self.environment()
        if kind == "worker":
            env["LOGFLUME_PROCESSOR_WORKER_NAME"] = name
        self.tmp.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        process = Process(name, kind, command, popen, log)
        self.running[name] = process
        return process

    def kill(self, name: str) -> Process:
        """SIGKILL ``name`` (the process gets no chance to commit, flush or leave its group)."""
        process = self.running.pop(name)
        if not process.exited():
            process.popen.send_signal(signal.SIGKILL)
        process.popen.wait(timeout=30)
        self.kills += 1
        return process

    def restart(self, process: Process) -> Process:
        """Start ``process`` again under the same name (a supervisor's restart)."""
        self.running.pop(process.name, None)
        return self._start(process.name, process.kind, process.command)

    def restart_exited(self) -> list[str]:
        """Restart whatever exited on its own (a worker that lost the broker exits by
        design: a failed send must not be committed); the names restarted."""
        exited = [p for p in self.running.values() if p.exited()]
        for process in exited:
            self.restarts_after_exit += 1
            self.restart(process)
        return [p.name for p in exited]

    def stop_all(self, timeout_s: float = 20.0) -> None:
        """SIGTERM everything, SIGKILL what is still there after ``timeout_s``."""
        for process in self.running.values():
            if not process.exited():
                process.popen.terminate()
        for process in self.running.values():
            try:
                process.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=10)
        self.running.clear()

    def dump_stacks(self, into: Path) -> str:
        """Every running process's Python stacks, with locals (``py-spy dump``), written to
        ``into``: what a stalled worker was waiting on. Empty when py-spy is not installed."""
        spy = shutil.which("py-spy")
        if spy is None:
            return ""
        parts = []
        for process in self.running.values():
            if process.exited():
                continue
            done = subprocess.run(
                [spy, "dump", "--locals", "--pid", str(process.pid)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            parts.append(f"--- {process.name} (pid {process.pid}) ---\n{done.stdout}{done.stderr}")
        text = "\n".join(parts)
        into.write_text(text)
        return text

    def logs(self, tail_chars: int = 3000) -> str:
        """The tail of every log file written (for a failing test's report)."""
        return "\n".join(
            f"--- {log.name} ---\n{log.read_text(errors='replace')[-tail_chars:]}"
            for log in sorted(self.tmp.glob("*.log"))
        )
