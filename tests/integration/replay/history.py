"""A live pipeline over a generated history, for the replay tests and ``bench/replay_bench.py``.

:func:`produce_history` publishes :func:`logflume.synthetic.generate_events` to the raw
topic as the SDK packs it; :class:`LivePipeline` runs the real Faust worker
(``python -m processors.worker``) and the real sink (``logflume sink``) as subprocesses
and :meth:`LivePipeline.wait_drained` waits until both consumer groups have committed
everything; :func:`logflume` runs any CLI command as a subprocess in the same environment.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from kernel.settings import Settings
from logflume.synthetic import generate_events, pack_events
from processors.app import app_id
from processors.codec import RECORD_OVERHEAD_BYTES
from tests.offsets import group_offsets
from tests.services import REPO_ROOT

__all__ = [
    "LivePipeline",
    "cli_env",
    "group_lag",
    "logflume",
    "logflume_ok",
    "produce_history",
    "spawn_logflume",
]

WORKER_ENV = {
    "LOGFLUME_PROCESSOR_SESSION_TIMEOUT_S": "6",
    "LOGFLUME_PROCESSOR_HEARTBEAT_INTERVAL_S": "1",
    "LOGFLUME_PROCESSOR_COMMIT_INTERVAL_S": "1",
}


def cli_env(settings: Settings, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``logflume`` subprocess pointing at ``settings``' services."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DATABASE_URL": settings.dsn,
        "LOGFLUME_TOPIC_PREFIX": settings.topic_prefix,
        "LOGFLUME_PARTITIONS": str(settings.partitions),
        "LOGFLUME_HOME": str(home),
        "LOGFLUME_SINK_GROUP": settings.sink_group,
        "COLUMNS": "200",
        **extra,
    }


def logflume(
    settings: Settings, home: Path, *args: str, timeout_s: float = 900, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``logflume ARGS`` to completion; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-c", "from logflume.cli import main; main()", *args],
        cwd=REPO_ROOT,
        env=cli_env(settings, home, **extra),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def logflume_ok(settings: Settings, home: Path, *args: str) -> str:
    """Run ``logflume ARGS``, assert it succeeded; its stdout."""
    result = logflume(settings, home, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def spawn_logflume(settings: Settings, home: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``logflume ARGS`` without waiting (its output is discarded)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from logflume.cli import main; main()", *args],
        cwd=REPO_ROOT,
        env=cli_env(settings, home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def produce_history(settings: Settings, events: int, *, seed: int = 7) -> tuple[int, int]:
    """Publish about ``events`` generated events; (events, records) published."""
    encoded = generate_events(events, seed=seed)
    records = pack_events(encoded, settings.partitions, seed=seed)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        compression_type="lz4",
        max_request_size=settings.max_record_bytes + RECORD_OVERHEAD_BYTES,
    )
    await producer.start()
    try:
        futures = []
        for partition, value in records:
            futures.append(await producer.send(settings.topics.events, value, partition=partition))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(encoded), len(records)


async def group_lag(settings: Settings, group: str, topics: Sequence[str]) -> int:
    """Records of ``topics`` not yet committed by ``group`` (uncommitted partitions count
    from offset 0: every topic here starts empty)."""
    tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
    offsets = await group_offsets(settings, group, tps)
    return sum(end - (done or 0) for done, end in offsets.values())


@dataclass
class LivePipeline:
    """The real Faust worker and sink as subprocesses, logging to files in ``tmp``."""

    settings: Settings
    tmp: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        home = self.tmp / "home"
        base = cli_env(self.settings, home, LOGFLUME_SINK_LINGER_MS="100")
        worker = [sys.executable, "-m", "processors.worker"]
        sink = [sys.executable, "-c", "from logflume.cli import main; main()", "sink"]
        for name, args, env in (
            ("worker", worker, {**base, **WORKER_ENV, "LOGFLUME_PROCESSOR_WORKER_NAME": "live"}),
            ("sink", sink, base),
        ):
            log = self.tmp / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            self.processes.append(process)
            self.logs.append(log)

    async def lag(self) -> int:
        t = self.settings.topics
        processors = await group_lag(
            self.settings, app_id(self.settings), [t.events, t.entities, t.groups]
        )
        sink = await group_lag(
            self.settings, self.settings.sink_group, [t.entities, t.rollups, t.deadletter]
        )
        return processors + sink

    async def wait_drained(self, timeout_s: float) -> float:
        """Wait until both groups have committed every record, twice 3 s apart (outputs
        may still be in flight when the inputs are committed); the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout_s
        quiet = 0
        while quiet < 2:
            for process in self.processes:
                if process.poll() is not None:
                    raise AssertionError(f"a live process exited: {self.tails()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the live pipeline did not drain: {self.tails()}")
            try:
                lag = await self.lag()
            except KafkaError:  # e.g. the group's coordinator is not elected yet
                lag = -1
            quiet = quiet + 1 if lag == 0 else 0
            await asyncio.sleep(3 if quiet else 1)
        return time.monotonic() - started

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def tails(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
                         for p in self.logs if p.exists())  # fmt: skip
