"""The one backoff policy: exponential, capped, jittered, reset."""

from __future__ import annotations

import random

import pytest

from kernel.backoff import Backoff


def _lowest(low: float, high: float) -> float:
    return low


def _highest(low: float, high: float) -> float:
    return high


def test_without_jitter_the_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 1.0, jitter=0.0)
    delays = [backoff.next() for _ in range(7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert backoff.attempts == 7


def test_reset_starts_again_at_the_first_delay() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.0)
    for _ in range(4):
        backoff.next()
    assert backoff.ceiling_s == 8.0
    backoff.reset()
    assert backoff.attempts == 0 and backoff.next() == 0.5


def test_full_jitter_draws_from_zero_to_the_delay() -> None:
    backoff = Backoff(0.1, 5.0, uniform=_lowest)  # jitter=1 is the default
    assert [backoff.next() for _ in range(3)] == [0.0, 0.0, 0.0]
    backoff = Backoff(0.1, 5.0, uniform=_highest)
    assert [backoff.next() for _ in range(3)] == pytest.approx([0.1, 0.2, 0.4])


def test_half_jitter_draws_from_half_the_delay_to_the_delay() -> None:
    low = Backoff(0.4, 2.0, jitter=0.5, uniform=_lowest)
    high = Backoff(0.4, 2.0, jitter=0.5, uniform=_highest)
    assert [low.next() for _ in range(4)] == pytest.approx([0.2, 0.4, 0.8, 1.0])
    assert [high.next() for _ in range(4)] == pytest.approx([0.4, 0.8, 1.6, 2.0])


def test_random_delays_stay_within_their_bounds() -> None:
    rng = random.Random(7)
    backoff = Backoff(0.2, 3.0, jitter=0.5, uniform=rng.uniform)
    for attempt in range(12):
        ceiling = min(3.0, 0.2 * 2**attempt)
        assert ceiling / 2 <= backoff.next() <= ceiling


def test_a_cap_below_the_first_delay_caps_it_too() -> None:
    backoff = Backoff(1.0, 0.25, jitter=0.0)
    assert [backoff.next(), backoff.next()] == [0.25, 0.25]
    backoff.reset()
    assert backoff.next() == 0.25


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": -1.0, "max_s": 1.0},
        {"initial_s": 1.0, "max_s": 1.0, "factor": 0.5},
        {"initial_s": 1.0, "max_s": 1.0, "jitter": 1.5},
    ],
)
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]
