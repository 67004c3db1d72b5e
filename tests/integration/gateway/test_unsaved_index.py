"""The gateways' shared index of save=false logs, against a real PostgreSQL: a create
accepted by one gateway makes another strip the payload of its update; a log that the
pipeline stored with save = false is recognised too; old entries are swept."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.store import connect_pool
from gateway.unsaved import PgUnsavedIndex
from tests.integration.gateway.helpers import own_env
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_the_index_answers_every_gateway_and_the_stored_logs(services: Services) -> None:
    async with own_env(services, "unsaved") as env:
        dsn = env.settings.dsn
        one = await connect_pool(dsn, max_size=2, timeout_s=10)  # two gateways' pools
        two = await connect_pool(dsn, max_size=2, timeout_s=10)
        try:
            await PgUnsavedIndex(one).record("proj-a", ["id:data_1", "ref:r-1"])
            other = PgUnsavedIndex(two)
            assert await other.known("proj-a", ["ref:r-1", "id:data_9"]) == {"ref:r-1"}
            assert await other.known("proj-b", ["ref:r-1"]) == set()
            conn = await asyncpg.connect(dsn, timeout=10)
            try:  # stored by the pipeline from a producer that never went through a gateway
                await conn.execute(
                    "INSERT INTO logs (project, id, reference_id, save, version)"
                    " VALUES ('proj-a', 'data_5', 'r-5', false, 1),"
                    " ('proj-a', 'data_6', 'r-6', true, 1)"
                )
            finally:
                await conn.close()
            found = await other.known("proj-a", ["id:data_5", "ref:r-5", "ref:r-6", "id:data_6"])
            assert found == {"id:data_5", "ref:r-5"}
            assert await other.expire(3600) == 0  # all recent
            assert await other.expire(0) == 2
            assert await other.known("proj-a", ["ref:r-1"]) == set()
        finally:
            await one.close()
            await two.close()
