"""API keys: one project per key, only a hash stored, checked on every request.

A key is ``lf_`` + 43 URL-safe characters (256 random bits), printed once by
``logflume keys create``; the database keeps its SHA-256 (a fast hash suffices for a
random 256-bit secret) and its first characters, to tell keys apart. Requests carry it in
``X-API-KEY`` (the Humanloop SDK), ``x-maxim-api-key`` (the Maxim SDK) or
``Authorization: Bearer``. Verified keys (and refused ones) are cached for
``key_cache_ttl_s`` so that the hot path costs a dict lookup; a revoked key stops working
within that time. Acceptances and refusals are cached apart (10,000 valid keys, 1,000
refusals; in each, the least recently verified go first), so a flood of invalid keys only
turns the refusals over and never evicts a valid key. While PostgreSQL is unreachable, a
key this gateway verified before keeps its last answer, however old (ingestion goes on; a
refusal only while it is among the last 1,000); a key it never saw is answered 503 with
``Retry-After``, since it can be neither accepted nor refused. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol

import asyncpg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from producers.contract.types import MAX_PROJECT_LENGTH, PROJECT_PATTERN, PROJECT_RULE

from .errors import Unauthorized, Unavailable
from .outage import UNAVAILABLE, DatabaseWatch

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "KeyStore",
    "PgKeyStore",
    "Project",
    "create_key",
    "hash_key",
    "list_keys",
    "new_key",
    "request_project",
    "revoke_key",
]

KEY_PREFIX = "lf_"
_SHOWN_CHARS = 10
_ACCEPTED_MAX = 10_000  # valid keys: only other valid keys (re-)verified later evict one
_REFUSED_MAX = 1_000  # refusals: any caller can add one, so they never share with the above

humanloop_key = APIKeyHeader(name="X-API-KEY", auto_error=False, scheme_name="HumanloopKey")
maxim_key = APIKeyHeader(name="x-maxim-api-key", auto_error=False, scheme_name="MaximKey")
bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore(Protocol):
    async def project_for(self, key: str) -> str | None:
        """The project of a valid key, None for an unknown or revoked one."""
        ...


class _Verdicts:
    """``key hash -> (valid until, project or None)``, at most ``capacity`` entries; the
    least recently verified go first (a hit does not refresh an entry, a re-check does)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: dict[str, tuple[float, str | None]] = {}

    def get(self, digest: str) -> tuple[float, str | None] | None:
        return self._items.get(digest)

    def put(self, digest: str, until: float, project: str | None) -> None:
        self._items.pop(digest, None)
        while len(self._items) >= self._capacity:
            self._items.pop(next(iter(self._items)))
        self._items[digest] = (until, project)

    def discard(self, digest: str) -> None:
        self._items.pop(digest, None)


class PgKeyStore:
    """Keys in PostgreSQL's ``api_keys``, with small TTL caches in front (acceptances apart
    from refusals); the last answer stands in while the database is unreachable (see the
    module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl_s: float,
        timeout_s: float = 10.0,
        watch: DatabaseWatch | None = None,
    ) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._watch = watch or DatabaseWatch()
        self._accepted = _Verdicts(_ACCEPTED_MAX)
        self._refused = _Verdicts(_REFUSED_MAX)

    async def project_for(self, key: str) -> str | None:
        digest = hash_key(key)
        now = time.monotonic()
        # A hash is in one cache at most: each answer removes it from the other.
        cached = self._accepted.get(digest) or self._refused.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            self._watch.check()
            project = await self._pool.fetchval(
                "SELECT project FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                digest,
                timeout=self._timeout_s,
            )
        except UNAVAILABLE as exc:
            self._watch.failed("api_key", exc)
            if cached is None:
                raise Unavailable(
                    "PostgreSQL is unavailable and this API key was not seen before; retry later"
                ) from None
            return cached[1]  # the last answer, however old
        self._watch.answered()
        if project is None:  # unknown or revoked: refused from now on, offline too
            self._accepted.discard(digest)
            self._refused.put(digest, now + self._ttl_s, None)
        else:
            self._refused.discard(digest)
            self._accepted.put(digest, now + self._ttl_s, project)
        return project  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    project: str
    prefix: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


async def create_key(
    conn: asyncpg.Connection, project: str, name: str | None = None
) -> tuple[ApiKey, str]:
    """A new key for ``project``: its record and the key itself (shown once)."""
    if not re.match(PROJECT_PATTERN, project) or len(project) > MAX_PROJECT_LENGTH:
        raise ValueError(f"project: {PROJECT_RULE} (at most {MAX_PROJECT_LENGTH})")
    key = new_key()
    key_id = "key_" + secrets.token_hex(8)
    row = await conn.fetchrow(
        "INSERT INTO api_keys (id, project, key_hash, prefix, name) VALUES ($1, $2, $3, $4, $5)"
        " RETURNING id, project, prefix, name, created_at, revoked_at",
        key_id,
        project,
        hash_key(key),
        key[:_SHOWN_CHARS],
        name,
    )
    return ApiKey(**dict(row)), key


async def list_keys(conn: asyncpg.Connection, project: str | None = None) -> list[ApiKey]:
    rows = await conn.fetch(
        "SELECT id, project, prefix, name, created_at, revoked_at FROM api_keys"
        " WHERE $1::text IS NULL OR project = $1 ORDER BY project, created_at",
        project,
    )
    return [ApiKey(**dict(row)) for row in rows]


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return status.endswith(" 1")


async def request_project(
    request: Request,
    humanloop: Annotated[str | None, Depends(humanloop_key)],
    maxim: Annotated[str | None, Depends(maxim_key)],
    authorization: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The project of the request's API key; 401 without a valid one."""
    key = humanloop or maxim or (authorization.credentials if authorization else None)
    if not key:
        raise Unauthorized("an API key is required (X-API-KEY or x-maxim-api-key)")
    store: KeyStore = request.app.state.keys
    project = await store.project_for(key)
    if project is None:
        raise Unauthorized("the API key is not valid")
    return project


Project = Annotated[str, Depends(request_project)]
