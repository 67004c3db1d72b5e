"""The API-key cache of :class:`gateway.auth.PgKeyStore` (no network: a pool over a dict of
key hashes that fails as asyncpg does while the server is stopped). Refusals are cached
apart from acceptances, so no number of invalid keys evicts a valid one; a revoked key
still stops working within the TTL, and stays refused while PostgreSQL is away."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from gateway.auth import PgKeyStore, hash_key
from gateway.errors import Unavailable
from gateway.outage import DatabaseWatch

VALID = "lf_" + "v" * 43


class KeysPool:
    """``api_keys`` as a dict (hash -> project); raises ``ConnectionRefusedError`` (what a
    stopped server gives) while not ``up``. Counts the queries it answered."""

    def __init__(self) -> None:
        self.up = True
        self.queries = 0
        self.projects = {hash_key(VALID): "proj-a"}

    async def fetchval(self, sql: str, *args: Any, timeout: float) -> Any:
        assert "api_keys" in sql, sql
        if not self.up:
            raise ConnectionRefusedError(111, "Connection refused")
        self.queries += 1
        return self.projects.get(args[0])


def _store(pool: KeysPool, ttl_s: float) -> PgKeyStore:
    # retry_s=0: a lookup after a failure asks the (fake) pool again rather than falling
    # back at once, so each step below sees the pool as it is now.
    return PgKeyStore(pool, ttl_s=ttl_s, watch=DatabaseWatch(retry_s=0))  # type: ignore[arg-type]


def _random_key() -> str:
    return "lf_" + secrets.token_urlsafe(32)


async def test_invalid_keys_never_evict_a_valid_one() -> None:
    pool = KeysPool()
    store = _store(pool, ttl_s=3600)
    assert await store.project_for(VALID) == "proj-a"
    # Far more invalid keys than any cache holds (an attacker's random keys).
    for _ in range(25_000):
        assert await store.project_for(_random_key()) is None
    queries = pool.queries
    assert await store.project_for(VALID) == "proj-a"
    assert pool.queries == queries  # still cached: no PostgreSQL lookup
    pool.up = False
    assert await store.project_for(VALID) == "proj-a"  # known a moment ago: no 503


async def test_a_refused_key_is_cached_too() -> None:
    pool = KeysPool()
    store = _store(pool, ttl_s=3600)
    bad = _random_key()
    assert await store.project_for(bad) is None
    queries = pool.queries
    for _ in range(10):
        assert await store.project_for(bad) is None
    assert pool.queries == queries  # one lookup per TTL, as for a valid key
    pool.up = False
    assert await store.project_for(bad) is None  # its last answer, not a 503
    with pytest.raises(Unavailable):
        await store.project_for(_random_key())  # never seen: neither accepted nor refused


async def test_a_revoked_key_stops_working_after_the_ttl_and_stays_refused_offline() -> None:
    pool = KeysPool()
    cached = _store(pool, ttl_s=3600)
    assert await cached.project_for(VALID) == "proj-a"
    del pool.projects[hash_key(VALID)]  # revoked
    assert await cached.project_for(VALID) == "proj-a"  # within the TTL: the cached answer

    pool.projects[hash_key(VALID)] = "proj-a"
    store = _store(pool, ttl_s=0)  # every lookup re-checks
    assert await store.project_for(VALID) == "proj-a"
    del pool.projects[hash_key(VALID)]  # revoked
    assert await store.project_for(VALID) is None
    pool.up = False
    assert await store.project_for(VALID) is None  # its last answer is the refusal
    pool.up = True
    pool.projects[hash_key(VALID)] = "proj-a"  # (a key never comes back; the cache may)
    assert await store.project_for(VALID) == "proj-a"
    pool.up = False
    assert await store.project_for(VALID) == "proj-a"
