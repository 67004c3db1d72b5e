"""Schemathesis over the gateway's own OpenAPI spec, against a served gateway with a real
broker and PostgreSQL: whatever it sends (valid and invalid requests), no 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from gateway import GatewaySettings, create_app
from kernel.settings import Settings
from tests.integration.gateway.helpers import ServedGateway, own_env
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

schema = schemathesis.openapi.from_dict(create_app(Settings(), GatewaySettings()).openapi())
# The /v5 routes are the same handlers as the root ones (the Humanloop SDK's base URL).
schema = schema.exclude(path_regex="^/v5/")
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(services: Services, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[tuple[str, str]]:  # fmt: skip
    spool = tmp_path_factory.mktemp("fuzz") / "spool"
    async with own_env(services, "fuzz", projects=("fuzz",)) as env:
        options = GatewaySettings(spool_dir=spool, max_body_bytes=256 * 1024)
        with ServedGateway(env.settings, options) as gateway:
            yield gateway.url, env.keys["fuzz"]


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: schemathesis.Case, served: tuple[str, str]) -> None:
    url, key = served
    response = case.call(base_url=url, headers={"X-API-KEY": key}, timeout=30)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
