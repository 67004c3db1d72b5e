"""Ids are any text of the caller's: every key built from them is injective (two distinct ids
never meet in one key) and gives the id back, whatever characters the ids hold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from processors.entities import plain_event, to_change
from processors.outcome import Outcome
from processors.stage1 import entity_output_key
from processors.stage2 import process_entities, process_groups
from producers.contract import ContractError, routing_key, validate_event
from producers.contract.keys import from_key_part, key_part, member_key
from producers.sdk.encoding import EventEncoder

# Any text PostgreSQL and JSON can carry: no NUL, no lone surrogates. The separators and the
# escape character are drawn often, so that collisions would be found if they could happen.
ids = st.text(
    alphabet=st.one_of(
        st.sampled_from("/%:\x1f|#?@ 2F1F25"),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    min_size=1,
    max_size=40,
)
projects = st.sampled_from(["acme", "a:b", "p.q-r@s"])
NASTY = [
    "ticket 4711/answer",
    "order#12|a",
    "tenant/abc",
    "üñí-ref",
    "100%",
    "a%2Fb",
    "what?x=1&y=2",
    "line\nbreak\x1ftab",
    "../../etc/passwd",
    "x'); DROP TABLE logs; --",
    "k" * 1024,
]


def _state_key(event: Any) -> str:
    return to_change(plain_event(event))[0]


def _log_event(project: str, log_id: str, reference_id: str | None = None) -> Any:
    body: dict[str, Any] = {"id": log_id, "path": "keys/probe"}
    if reference_id is not None:
        body["reference_id"] = reference_id
    return validate_event(
        {"event_id": "evt-keys", "type": "log", "ts": datetime.now(UTC).isoformat(),
         "project": project, "body": body}
    )  # fmt: skip


@given(ids)
def test_a_key_part_gives_the_id_back_and_holds_no_separator(value: str) -> None:
    part = key_part(value)
    assert from_key_part(part) == value
    assert "/" not in part and "\x1f" not in part


@given(projects, ids, projects, ids)
def test_distinct_ids_never_share_a_state_or_routing_key(
    project_a: str, id_a: str, project_b: str, id_b: str
) -> None:
    a, b = _log_event(project_a, id_a), _log_event(project_b, id_b)
    same = (project_a, id_a) == (project_b, id_b)
    assert (_state_key(a) == _state_key(b)) is same
    assert (routing_key(a) == routing_key(b)) is same


@given(st.lists(st.tuples(ids, ids), min_size=2, max_size=2, unique=True))
@example([("a\x1flog:acme/b", "c"), ("a", "b\x1flog:acme/c")])  # met, unescaped
@example([("a/b", "c"), ("a", "b/c")])
def test_member_keys_never_collide(pairs: list[tuple[str, str]]) -> None:
    """``a/b`` + ``c`` never meets ``a`` + ``b/c``: a group's id and its member's id."""
    keys = {member_key(f"trace:acme/{key_part(g)}", f"log:acme/{key_part(m)}") for g, m in pairs}
    assert len(keys) == 2


@pytest.mark.parametrize("value", NASTY)
def test_the_contract_takes_nasty_ids(value: str) -> None:
    event = _log_event("acme", value, reference_id=value)
    assert event.body.id == value and event.body.reference_id == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [("a\x00b", "NUL"), ("k" * 1025, "at most 1024"), ("\U0001f600" * 513, "2048 bytes")],
)
def test_the_contract_refuses_nul_and_overlong_ids_by_field(value: str, reason: str) -> None:
    with pytest.raises(ContractError) as info:
        _log_event("acme", value)
    assert info.value.fields == ("body.id",)
    assert reason in str(info.value)


@pytest.mark.parametrize("value", NASTY)
def test_the_sdk_routes_as_the_contract_does(value: str) -> None:
    encoder = EventEncoder("acme", max_event_bytes=1 << 20)
    body = {"id": value, "reference_id": value, "path": "keys/probe"}
    key, data = encoder.encode("log", 1_700_000_000.0, body, ())
    assert key == routing_key(validate_event(orjson.loads(data)))


@pytest.mark.parametrize("value", NASTY)
def test_groups_keyed_by_nasty_ids_come_back_under_their_ids(value: str) -> None:
    """Stage 2 parses its group keys back into (kind, project, id): the rollups of a trace
    and of a session named by a nasty id carry that id exactly."""
    entity = {
        "kind": "log", "key": f"log:acme/{key_part(value)}", "project": "acme", "version": 1,
        "trace_root": value, "id": value, "session_id": value, "prompt_tokens": 3,
        "created_at": "2026-03-02T09:30:00+00:00", "last_ts": 1.0,
    }  # fmt: skip
    traces = Outcome()
    process_entities([entity], lambda key: None, traces)
    assert [(o.value["kind"], o.value["id"]) for o in traces.outputs] == [("trace", value)]
    assert entity_output_key(entity) == traces.outputs[0].key
    sessions = Outcome()
    process_groups([c.value for c in traces.regroup], lambda key: None, sessions)
    assert [(o.value["kind"], o.value["id"]) for o in sessions.outputs] == [("session", value)]
    assert sessions.outputs[0].value["prompt_tokens"] == 3
