"""The SDK inside real app servers that fork after the client exists.

Each app (``tests/integration/sdk/apps``) creates its client at import; the server forks
its workers afterwards (gunicorn ``--preload`` with sync workers and with uvicorn workers,
a ``multiprocessing`` pool with fork and with spawn). N requests (tasks) each log one
event. Exactly N events must reach Kafka, none twice, and processes alive at the same time
must never share a spool slot. And a fork in the middle of a broker outage.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from logflume.services.kafka import LocalKafka
from tests.integration.pipeline_env import free_port

from .conftest import consume

REPO = Path(__file__).resolve().parents[3]
REQUESTS = 300
pytestmark = pytest.mark.integration


def app_env(kafka_bootstrap: str, topic: str, spool: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LOGFLUME_SDK_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGFLUME_SDK_TOPIC": topic,
        "LOGFLUME_SDK_PROJECT": "fork-it",
        "LOGFLUME_SDK_SPOOL_DIR": str(spool),
        "PYTHONPATH": str(REPO),
    }


def get(port: int, ref: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", f"/?ref={ref}")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_serving(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the app server exited"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/")  # no ref: logs nothing
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the app server did not start")


def check_delivery(kafka_bootstrap: str, topic: str, refs: set[str]) -> dict[str, set[str]]:
    """Every ref exactly once; returns the spool slots each process used."""
    events = consume(kafka_bootstrap, topic, expected=len(refs))
    bodies = [e["body"] for e in events]  # type: ignore[index]
    seen = [b["reference_id"] for b in bodies if b.get("reference_id") in refs]  # type: ignore[union-attr]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event arrived twice"
    assert set(seen) == refs, f"{len(refs - set(seen))} of {len(refs)} events missing"
    assert len(seen) == len(refs), "a request was logged twice"
    slots: dict[str, set[str]] = defaultdict(set)
    for body in bodies:
        meta = body.get("metadata") or {}  # type: ignore[union-attr]
        if "pid" in meta:
            slots[meta["pid"]].add(meta["slot"])
    return slots


@pytest.mark.parametrize(
    "worker_class,app",
    [
        ("sync", "tests.integration.sdk.apps.wsgi_app:app"),
        ("uvicorn_worker.UvicornWorker", "tests.integration.sdk.apps.asgi_app:app"),
    ],
    ids=["gunicorn-sync", "gunicorn-uvicorn"],
)
def test_gunicorn_preload_every_request_logged_once(
    kafka_bootstrap: str, topic: str, tmp_path: Path, worker_class: str, app: str
) -> None:
    pytest.importorskip("gunicorn")
    spool = tmp_path / "spool"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "--preload", "--workers", "3",
            "--worker-class", worker_class, "--bind", f"127.0.0.1:{port}",
            "--graceful-timeout", "20", app,
        ],
        cwd=REPO,
        env=app_env(kafka_bootstrap, topic, spool),
    )  # fmt: skip
    try:
        wait_serving(port, proc)
        refs = {f"req-{i}" for i in range(REQUESTS)}
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda ref: get(port, ref), sorted(refs)))
        assert statuses == [200] * REQUESTS
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: the workers finish and exit
        proc.wait(60)
    slots = check_delivery(kafka_bootstrap, topic, refs)
    workers = {pid: s for pid, s in slots.items()}
    # The three workers live side by side: three processes, three slots, none shared.
    used = [slot for s in workers.values() for slot in s]
    assert len(workers) >= 2, f"requests reached {len(workers)} worker(s)"
    assert len(used) == len(set(used)), f"workers shared a spool slot: {workers}"
    assert all(len(s) == 1 for s in workers.values())
    assert not list(spool.rglob("*.seg")), "events left in a spool"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_pool_every_task_logged_once(
    kafka_bootstrap: str, topic: str, tmp_path: Path, method: str
) -> None:
    spool = tmp_path / "spool"
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.sdk.apps.mp_app", method, str(REQUESTS)],
        cwd=REPO,
        env=app_env(kafka_bootstrap, topic, spool),
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split()[-1] == str(REQUESTS).encode(), done.stderr[-2000:]
    slots = check_delivery(kafka_bootstrap, topic, {f"task-{i}" for i in range(REQUESTS)})
    used = [slot for s in slots.values() for slot in s]
    assert len(slots) >= 2, f"tasks ran in {len(slots)} process(es)"
    assert len(used) == len(set(used)), f"processes shared a spool slot: {dict(slots)}"
    assert not list(spool.rglob("*.seg")), "events left in a spool"


OUTAGE_SCRIPT = """
import os, sys, time
from pathlib import Path
from producers.sdk import Client

topic, spool, bootstrap, flags = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
client = Client(bootstrap_servers=bootstrap, topic=topic, project="fork-it", spool_dir=spool,
                send_timeout_s=2.0)

def log_many(prefix, count):
    count += client.stats().spooled
    for i in range(count - client.stats().spooled):
        client.log(reference_id=f"{prefix}-{i}", output="x")
    deadline = time.monotonic() + 60
    while client.stats().spooled < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return client.stats().spooled

assert log_many("before-fork", 500) == 500, client.stats()  # the broker is down
pid = os.fork()
role = "child" if pid == 0 else "parent"
spooled = log_many(f"{role}-after-fork", 500)
(flags / f"{role}.ready").write_text(f"{spooled} {client.spool_slot}")
while not (flags / "up").exists():
    time.sleep(0.05)
ok = client.flush(120)
stats = client.stats()
client.close(10)
(flags / f"{role}.done").write_text(f"{ok} {stats.sent} {dict(stats.dropped)}")
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_fork_during_an_outage_every_event_delivered_once(
    kafka_bootstrap: str, topic: str, tmp_path: Path, local_kafka: LocalKafka
) -> None:
    """Broker down; the parent spools, forks; both log (each to its own spool slot); the
    broker comes back: every event arrives once (the parent's spool is sent by the parent
    only)."""
    flags = tmp_path / "flags"
    flags.mkdir()
    assert local_kafka.stop() is not None
    proc = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", OUTAGE_SCRIPT, topic, str(tmp_path / "spool"),
             kafka_bootstrap, str(flags)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not all((flags / f"{r}.ready").exists() for r in ("parent", "child")):
            assert proc.poll() is None, "the script failed before the fork's events spooled"
            assert time.monotonic() < deadline, "the events did not reach the spools"
            time.sleep(0.1)
    finally:
        local_kafka.start()
    (flags / "up").touch()
    assert proc.wait(180) == 0
    parent = (flags / "parent.ready").read_text().split()
    child = (flags / "child.ready").read_text().split()
    assert parent[0] == "1000" and child[0] == "500", (parent, child)
    assert parent[1] != child[1], "parent and child shared a spool slot"
    for role in ("parent", "child"):
        assert (flags / f"{role}.done").read_text().startswith("True"), role
    refs = {f"before-fork-{i}" for i in range(500)}
    refs |= {f"{role}-after-fork-{i}" for role in ("parent", "child") for i in range(500)}
    check_delivery(kafka_bootstrap, topic, refs)


def test_celery_prefork_every_task_logged_once(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    pytest.importorskip("celery")
    spool = tmp_path / "spool"
    env = {**app_env(kafka_bootstrap, topic, spool), "CELERY_FS_BROKER": str(tmp_path / "fs")}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.integration.sdk.apps.celery_app",
         "worker", "--pool", "prefork", "--concurrency", "3", "--loglevel", "warning"],
        cwd=REPO,
        env=env,
    )  # fmt: skip
    refs = {f"celery-{i}" for i in range(REQUESTS)}
    try:
        sender = "\n".join(
            [
                "import sys",
                "from tests.integration.sdk.apps.celery_app import app",
                "for ref in sys.argv[1:]:",
                "    app.send_task('log_task', args=[ref])",
            ]
        )
        subprocess.run([sys.executable, "-c", sender, *sorted(refs)], cwd=REPO, env=env, check=True)
        # Wait until the worker took every task (the filesystem broker's "out" folder empties).
        deadline = time.monotonic() + 120
        while any((tmp_path / "fs" / "out").iterdir()):
            assert worker.poll() is None, "the celery worker exited"
            assert time.monotonic() < deadline, "the tasks were not all taken"
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish
        worker.wait(60)
    slots = check_delivery(kafka_bootstrap, topic, refs)
    print(f"\ncelery: {REQUESTS} tasks logged by {len(slots)} pool processes")
    assert len(slots) >= 2, f"tasks ran in {len(slots)} process(es)"
    used = [slot for s in slots.values() for slot in s]
    assert len(used) == len(set(used)), f"processes shared a spool slot: {dict(slots)}"
    assert not list(spool.rglob("*.seg")), "events left in a spool"
