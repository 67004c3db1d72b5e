"""What the clients' factory does with a database URL it cannot parse (no server needed:
asyncpg refuses such a URL before it connects)."""

from __future__ import annotations

import pytest

from kernel.clients import pg_connect, pg_pool
from kernel.errors import ServiceError

# Unencoded "/", "?" and "#" in the password: asyncpg's parse errors quote pieces of it.
_BAD = ["postgresql://u:se/cret@db:5432/app", "postgresql://u:s?cret@db/app"]


@pytest.mark.parametrize("dsn", _BAD)
async def test_an_unparsable_database_url_is_named_without_its_password(dsn: str) -> None:
    with pytest.raises(ServiceError) as raised:
        await pg_connect(dsn, timeout=1)
    assert "could not be parsed" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    for secret in ("cret", "se/c", "s?c"):
        assert secret not in str(raised.value)


@pytest.mark.parametrize("dsn", _BAD)
async def test_a_pool_on_an_unparsable_url_too(dsn: str) -> None:
    with pytest.raises(ServiceError):
        await pg_pool(dsn, min_size=1, timeout=1)
