"""Bad input on the Maxim-compatible routes is answered in the shape maxim-py reads from an
error response, ``{"error": {"message": ...}}`` (maximhq/maxim-py,
``maxim/apis/maxim_apis.py``: the ``HTTPStatusError`` branch of the network call and of
``push_logs`` raises ``error_data["error"]["message"]``), the message naming the field and
the reason, which ``error.errors`` also lists; the other routes keep FastAPI's shape."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.gateway.conftest import A, Env

MAXIM = {"x-maxim-api-key": "key-a"}
LOG = "/api/sdk/v3/log"
REPOSITORIES = "/api/sdk/v3/log-repositories"
UPLOAD_URL = "/api/sdk/v1/log-repositories/attachments/upload-url"
KEY = "r/span/s1/files/original/f1"


def _sdk_message(body: Any) -> str | None:
    """What maxim-py raises for an error answer (its own test, as in maxim_apis.py)."""
    if (
        body
        and isinstance(body, dict)
        and "error" in body
        and isinstance(body["error"], dict)
        and "message" in body["error"]
    ):
        return str(body["error"]["message"])
    return None


@pytest.mark.parametrize(
    ("method", "path", "params", "field", "reason"),
    [
        ("POST", LOG, {}, "query.id", "is required"),
        ("POST", LOG, {"id": "r" * 257}, "query.id", "at most 256 characters"),
        ("GET", REPOSITORIES, {}, "query.loggerId", "is required"),
        ("GET", UPLOAD_URL, {}, "query.key", "is required"),
        ("GET", UPLOAD_URL, {"key": KEY, "size": "-1"}, "query.size", "greater than or equal"),
        ("GET", UPLOAD_URL, {"key": KEY, "size": "s3cret"}, "query.size", "valid integer"),
    ],
)
def test_a_bad_parameter_is_422_in_maxims_shape_naming_field_and_reason(
    env: Env, method: str, path: str, params: dict[str, str], field: str, reason: str
) -> None:
    answer = env.client.request(method, path, params=params, headers=MAXIM, content=b"")
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert set(body) == {"error"}, body
    message = _sdk_message(body)
    assert message is not None and message.startswith(f"{field}: "), body
    assert reason in message, body
    assert [e["field"] for e in body["error"]["errors"]] == [field]
    assert reason in body["error"]["errors"][0]["reason"]
    assert "s3cret" not in answer.text  # the input is never quoted


def test_every_bad_parameter_is_named(env: Env) -> None:
    answer = env.client.get(UPLOAD_URL, params={"size": "-1"}, headers=MAXIM)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert [e["field"] for e in error["errors"]] == ["query.key", "query.size"]
    assert error["message"].startswith("query.key: is required; query.size: ")


@pytest.mark.parametrize(
    ("path", "params", "content", "field", "reason"),
    [
        (LOG, {"id": "r"}, b"\xff\xfe", "body", "is not UTF-8"),
        (UPLOAD_URL, {"key": "no-slashes"}, b"", "query.key",
         "is not repository/entity/id/files/original/file"),
        (UPLOAD_URL, {"key": "r/span/" + "x" * 1500 + "/files/original/f"}, b"", "query.key",
         "the node id in it is invalid"),
    ],
)  # fmt: skip
def test_a_bad_body_or_key_is_400_naming_field_and_reason(
    env: Env, path: str, params: dict[str, str], content: bytes, field: str, reason: str
) -> None:
    method = "POST" if path == LOG else "GET"
    answer = env.client.request(method, path, params=params, headers=MAXIM, content=content)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert _sdk_message(answer.json()) == f"{field}: {error['errors'][0]['reason']}"
    assert [e["field"] for e in error["errors"]] == [field]
    assert reason in error["errors"][0]["reason"]


def test_an_unknown_maxim_route_is_answered_in_maxims_shape(env: Env) -> None:
    missing = env.client.get("/api/sdk/v3/no-such-endpoint", headers=MAXIM)
    assert missing.status_code == 404
    assert _sdk_message(missing.json()) is not None, missing.text
    wrong = env.client.delete(LOG, params={"id": "r"}, headers=MAXIM)
    assert wrong.status_code == 405 and "POST" in wrong.headers["allow"]
    assert _sdk_message(wrong.json()) is not None, wrong.text


def test_other_routes_keep_fastapis_shape(env: Env) -> None:
    answer = env.client.get("/logs", params={"limit": "-1"}, headers=A)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail[0]["field"] == "query.limit" and detail[0]["loc"] == ["query", "limit"]
    assert env.client.get("/no-such-endpoint").json() == {"detail": "Not Found"}
