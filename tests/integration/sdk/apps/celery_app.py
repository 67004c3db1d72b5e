"""A Celery app with a prefork pool: each ``log_task(ref)`` logs one event.

The broker is kombu's filesystem transport (folders named by ``CELERY_FS_BROKER``), so the
test needs no broker service; results are not stored."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from .common import log_request

_folder = Path(os.environ.get("CELERY_FS_BROKER", "/tmp/logflume-celery-broker"))
for _name in ("out", "processed"):
    (_folder / _name).mkdir(parents=True, exist_ok=True)

app = Celery("logflume_fork_it", broker="filesystem://")
app.conf.update(
    broker_transport_options={
        "data_folder_in": str(_folder / "out"),
        "data_folder_out": str(_folder / "out"),
        "data_folder_processed": str(_folder / "processed"),
    },
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="log_task")
def log_task(ref: str) -> str:
    return log_request(ref)
