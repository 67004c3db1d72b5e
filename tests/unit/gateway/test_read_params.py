"""Read parameters that pass validation reach PostgreSQL in a form it takes: pages within a
bound, times UTC can hold, cursors the API made (else 400/422 naming the parameter; these
used to answer 500 from asyncpg or PostgreSQL; the real database's side is
tests/integration/gateway/test_read_params.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from gateway.errors import BadRequest
from gateway.store import Cursor, as_utc

from .conftest import A, Env


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v5/logs?page=99999999999999999999", "query.page"),
        ("/v5/logs?page=1000001", "query.page"),
        ("/v5/prompts?page=99999999999999999999", "query.page"),
        ("/prompts?page=1000001", "query.page"),
        ("/v5/logs?page=1&start_date=0001-01-01T00:00:00%2B05:00", "query.start_date"),
        ("/v5/logs?end_date=9999-12-31T23:59:59-01:00", "query.end_date"),
    ],
)
def test_a_parameter_no_query_could_take_is_a_422_naming_it(env: Env, url: str, field: str):
    answer = env.client.get(url, headers=A)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["detail"]] == [field]


def test_query_times_are_sent_in_utc_naive_ones_taken_as_utc():
    assert as_utc(datetime(1, 1, 1)) == datetime(1, 1, 1, tzinfo=UTC)
    assert as_utc(datetime.fromisoformat("2026-01-01T05:00:00+05:00")) == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    assert as_utc(datetime.fromisoformat("0001-01-01T00:00:00-05:00")).hour == 5
    with pytest.raises(ValueError, match="out of range once converted to UTC"):
        as_utc(datetime.fromisoformat("0001-01-01T00:00:00+05:00"))


def _forged(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize(
    "value",
    [
        ["0001-01-01T00:00:00+05:00", "x"],  # before year 1 in UTC
        ["9999-12-31T23:59:59-01:00", "x"],  # after 9999 in UTC
        ["2026-01-01T00:00:00+00:00", "a\x00b"],  # PostgreSQL text holds no NUL
        ["2026-01-01T00:00:00+00:00", ""],
        ["2026-01-01T00:00:00+00:00", "x" * 1025],
        ["2026-01-01T00:00:00+00:00", 5],
        [20260101, "x"],
        ["2026-01-01T00:00:00+00:00"],
    ],
)
def test_a_forged_cursor_is_a_400_naming_the_cursor(value: object):
    with pytest.raises(BadRequest, match=r"^cursor: "):
        Cursor.decode(_forged(value))


def test_a_cursor_round_trips_in_utc():
    cursor = Cursor(datetime.fromisoformat("2026-01-01T05:00:00+05:00"), "data_1")
    decoded = Cursor.decode(cursor.encode())
    assert decoded == Cursor(datetime(2026, 1, 1, tzinfo=UTC), "data_1")
