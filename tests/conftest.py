"""Shared fixtures. ``services``: a real Kafka and PostgreSQL for the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.services import Services, acquire_services


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long-faults",
        action="store_true",
        default=False,
        help="run the fault suite's long form (200,000 events; also LOGFLUME_FAULTS=long)",
    )
    parser.addoption(
        "--cluster-faults",
        action="store_true",
        default=False,
        help="run the three-broker fault test (~5 min; also LOGFLUME_FAULTS=cluster)",
    )


# pytest calls a failed session fixture again for every test: fail those fast instead.
_services_failure: list[str] = []


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def services() -> AsyncIterator[Services]:
    """``(bootstrap_servers, dsn)`` of running services with the migrations and topics.

    From the environment when it points at them, else testcontainers when a Docker engine
    answers, else the project's own local services; only what was started here is stopped.
    """
    if _services_failure:
        pytest.fail(f"integration services unavailable: {_services_failure[0]}", pytrace=False)
    try:
        acquired = await acquire_services()
    except Exception as exc:
        _services_failure.append(f"{type(exc).__name__}: {exc}")
        raise
    try:
        yield acquired.services
    finally:
        await acquired.release()
