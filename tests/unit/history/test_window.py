"""--from / --until / --since parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from logflume.history.window import Window, parse_time


def test_earliest_means_no_lower_bound() -> None:
    assert parse_time("earliest", "--from") is None
    assert parse_time(" EARLIEST ", "--from") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T09:00:00Z", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("2026-03-02T09:00:00.250z", datetime(2026, 3, 2, 9, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-03-02T10:00:00+01:00", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("2026-03-02 09:00:00-02:30", datetime(2026, 3, 2, 11, 30, tzinfo=UTC)),
    ],
)
def test_iso_times_are_normalised_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text, "--from")
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


def test_a_time_without_timezone_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match=r"--until: '2026-03-02T09:00' has no timezone"):
        parse_time("2026-03-02T09:00", "--until")


@pytest.mark.parametrize("text", ["yesterday", "", "2026-13-01T00:00Z", "latest"])
def test_garbage_names_the_option(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--from: .* is not 'earliest' or an ISO 8601 time"):
        parse_time(text, "--from")


def test_window_counts_records_and_lag() -> None:
    window = Window("t", start={0: 5, 1: 0, 2: 7}, end={0: 10, 1: 3, 2: 7})
    assert window.records == 8
    assert window.remaining({}) == 8
    assert window.remaining({0: 9, 1: 3}) == 1
