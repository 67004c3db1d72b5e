"""The fault suite's two forms: a short one in every ``pytest`` run, a long one on demand
(``--long-faults`` or ``LOGFLUME_FAULTS=long``). ``LOGFLUME_FAULTS_SEED`` picks another seed
(the moments and order of the faults)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import pytest

__all__ = ["FaultPlan"]


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """How big the run is and which faults it suffers (each name once per occurrence)."""

    form: str
    events: int
    chunks: int
    faults: tuple[str, ...]
    seed: int
    settle_timeout_s: float


SHORT = FaultPlan(
    form="short",
    events=24_000,
    chunks=10,
    faults=(
        "kill_worker",
        "kill_worker",
        "kill_sink",
        "kill_sink",
        "restart_kafka",
        "restart_postgres",
    ),
    seed=8,
    settle_timeout_s=300,
)
LONG = FaultPlan(
    form="long",
    events=200_000,
    chunks=40,
    faults=(
        *("kill_worker",) * 6,
        *("kill_sink",) * 6,
        *("restart_kafka",) * 2,
        *("restart_postgres",) * 2,
    ),
    seed=88,
    settle_timeout_s=900,
)


@pytest.fixture
def fault_plan(request: pytest.FixtureRequest) -> FaultPlan:
    long = request.config.getoption("--long-faults") or os.environ.get("LOGFLUME_FAULTS") == "long"
    plan = LONG if long else SHORT
    seed = os.environ.get("LOGFLUME_FAULTS_SEED")  # scripts/soak_faults.py varies it per run
    return replace(plan, seed=int(seed)) if seed else plan
