"""The older ``POST /logs`` keeps what it is given or refuses it with field and reason:
``feedback`` (one entry or a list, every key kept) and ``config`` (its id and type) used to
be dropped while the answer was 200."""

from __future__ import annotations

import pytest

from .conftest import A, Env


def _published(env: Env, kind: str) -> list[dict]:
    return [e["body"] for e in env.sent() if e["type"] == kind]


def test_one_feedback_object_is_one_feedback_event(env: Env):
    answer = env.client.post("/logs", headers=A, json={
        "project": "p", "output": "hi",
        "feedback": {"type": "rating", "value": "good"}})  # fmt: skip
    assert answer.status_code == 200, answer.text
    (feedback,) = _published(env, "feedback")
    assert feedback["log_id"] == answer.json()["id"]
    assert (feedback["value"], feedback["source"]) == ("good", "rating")


def test_every_key_of_a_feedback_entry_is_kept(env: Env):
    entry = {"type": "rating", "value": "good", "comment": "nice", "id": "fb-1",
             "source": "reviewer-ui", "user": "ann", "unit": "stars",
             "metadata": {"k": "v"}, "created_at": "2026-01-01T00:00:00"}  # fmt: skip
    plain = {"value": 0.5, "type": "score"}
    answer = env.client.post("/logs", headers=A, json={
        "project": "p", "reference_id": "ref-9", "output": "hi",
        "feedback": [entry, plain, True]})  # fmt: skip
    assert answer.status_code == 200, answer.text
    log_id = answer.json()["id"]
    first, second, third = sorted(_published(env, "feedback"), key=lambda b: b["id"] != "fb-1")
    assert first == {
        "id": "fb-1", "log_id": log_id, "reference_id": "ref-9", "value": "good",
        "comment": "nice", "source": "reviewer-ui", "user": "ann",
        "metadata": {"type": "rating", "unit": "stars", "k": "v"},
        "created_at": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip
    rest = sorted([second, third], key=lambda b: str(b["value"]))
    assert [(b["value"], b.get("source")) for b in rest] == [(0.5, "score"), (True, None)]


def test_config_id_becomes_config_id_and_a_model_type_is_what_the_log_is(env: Env):
    answer = env.client.post("/logs", headers=A, json={
        "project": "p", "output": "hi",
        "config": {"id": "cfg_1", "type": "model", "model": "gpt-4o"}})  # fmt: skip
    assert answer.status_code == 200, answer.text
    (log,) = _published(env, "log")
    assert log["config_id"] == "cfg_1" and log["prompt"] == {"model": "gpt-4o"}


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"feedback": "good"}, "body.feedback"),
        ({"feedback": 5}, "body.feedback"),
        ({"config": "gpt-4o"}, "body.config"),
        ({"config": ["gpt-4o"]}, "body.config"),
        ({"config": {"type": "tool", "model": "m"}}, "body.config.type"),
        ({"config": {"model": "m"}, "prompt": {"model": "n"}}, "body.config"),
        ({"config": {"id": "cfg_1", "model": "m"}, "config_id": "cfg_2"}, "body.config.id"),
        ({"project": "a", "path": "b"}, "body.project"),
        ({"project_id": "a", "prompt_id": "b"}, "body.project_id"),
    ],
)
def test_what_the_older_route_cannot_carry_is_a_422_naming_it(env: Env, item: dict, field: str):
    answer = env.client.post("/logs", headers=A, json={"project": "p", "output": "hi", **item})
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["detail"]] == [field]
    assert env.sent() == []
    # In an array, the item is located.
    answer = env.client.post("/logs", headers=A, json=[{"project": "p"}, {"project": "p", **item}])
    assert answer.status_code == 422
    assert [e["loc"][:2] for e in answer.json()["detail"]] == [["body", 1]]
    assert env.sent() == []
