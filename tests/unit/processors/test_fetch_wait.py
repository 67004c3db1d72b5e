"""The workers' fetch wait: Faust builds its consumer with a fixed 1.5 s, which delayed each
stage's input (see ``processors.worker.patch_faust_fetch_wait``); the setting replaces it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from kernel.settings import Settings
from processors.app import make_app
from processors.worker import patch_faust_fetch_wait


@pytest.fixture
def restore_faust() -> Iterator[None]:
    thread_cls: Any = faust_aiokafka.AIOKafkaConsumerThread
    before = thread_cls._create_worker_consumer
    yield
    thread_cls._create_worker_consumer = before


async def _worker_consumer(settings: Settings) -> Any:
    app = make_app(settings)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # not started
    consumer._closed = True  # never started: nothing to close
    return consumer


async def test_faust_alone_waits_1500_ms(restore_faust: None) -> None:
    thread_cls: Any = faust_aiokafka.AIOKafkaConsumerThread
    original = getattr(thread_cls, "_logflume_create_worker_consumer", None)
    if original is not None:  # another test patched it in this process
        thread_cls._create_worker_consumer = original
    consumer = await _worker_consumer(Settings())
    # If Faust changes its fixed value, the patch and its documentation need a look.
    assert consumer._fetch_max_wait_ms == 1500


async def test_the_setting_replaces_it(restore_faust: None) -> None:
    settings = Settings(processor={"fetch_wait_ms": 40})
    patch_faust_fetch_wait(settings.processor.fetch_wait_ms)
    patch_faust_fetch_wait(settings.processor.fetch_wait_ms)  # idempotent: no double wrap
    consumer = await _worker_consumer(settings)
    assert consumer._fetch_max_wait_ms == 40
    assert Settings().processor.fetch_wait_ms == 50  # the default


def test_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="fetch_wait_ms"):
        Settings(processor={"fetch_wait_ms": 0})
