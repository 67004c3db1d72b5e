"""The gateways' shared index of Humanloop logs (their trace's root, their reference id),
against a real PostgreSQL: what one gateway records another finds, a stored log answers
too (its root is its own id when it has no trace id), deletion forgets, old rows are
swept."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.log_index import LogPlace, PgLogIndex
from gateway.store import connect_pool
from tests.integration.gateway.helpers import own_env
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_the_index_answers_every_gateway_and_the_stored_logs(services: Services) -> None:
    async with own_env(services, "logindex") as env:
        dsn = env.settings.dsn
        one = await connect_pool(dsn, max_size=2, timeout_s=10)  # two gateways' pools
        two = await connect_pool(dsn, max_size=2, timeout_s=10)
        try:
            child = LogPlace("data_child", "data_flow", None)
            referenced = LogPlace("data_ref", None, "ticket 1/a #|ü")
            await PgLogIndex(one).record("proj-a", [child, referenced])
            await PgLogIndex(one).record("proj-a", [LogPlace("data_child", "other", None)])
            other = PgLogIndex(two)
            found = await other.places("proj-a", ["data_child", "data_ref", "data_none"])
            assert found == {"data_child": child, "data_ref": referenced}  # first record wins
            assert await other.places("proj-b", ["data_child"]) == {}
            conn = await asyncpg.connect(dsn, timeout=10)
            try:  # stored by the pipeline from a producer that never went through a gateway
                await conn.execute(
                    "INSERT INTO logs (project, id, reference_id, trace_id, version)"
                    " VALUES ('proj-a', 'data_root', 'r-1', NULL, 1),"
                    " ('proj-a', 'data_member', NULL, 'data_root', 1)"
                )
            finally:
                await conn.close()
            stored = await other.places("proj-a", ["data_root", "data_member"])
            assert stored["data_root"] == LogPlace("data_root", None, "r-1")
            assert stored["data_member"] == LogPlace("data_member", "data_root", None)
            await other.forget("proj-a", ["data_child"])
            assert set(await other.places("proj-a", ["data_child", "data_ref"])) == {"data_ref"}
            assert await other.expire(3600) == 0  # all recent
            assert await other.expire(0) == 1
            assert await other.places("proj-a", ["data_ref"]) == {}
        finally:
            await one.close()
            await two.close()
