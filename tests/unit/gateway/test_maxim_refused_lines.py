"""A bad Maxim line is refused alone (listed in ``data.rejected``, kept as a dead letter)
and the rest of its batch is accepted: data nested deeper than JSON encoding goes, and ids
outside the contract's rule, which never reach PostgreSQL (in-memory twins that fail as
PostgreSQL does)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import asyncpg
import pytest

from gateway.held import HeldLine, MemoryHeldLines
from gateway.nodes import MemoryNodeIndex
from kernel.settings import Settings
from tests.unit.gateway.conftest import Env, gateway_env

MAXIM = {"x-maxim-api-key": "key-a"}
LONG_ID = "x" * 3000  # over the contract's 1,024 characters (and the btree's 2,704 bytes)
HEAVY_ID = "\U0001f600" * 600  # 600 characters, 2,400 bytes of UTF-8


def _nested(depth: int) -> str:
    return '{"a":' * depth + "{}" + "}" * depth


def _pg_check(ids: Iterable[str]) -> None:
    """What PostgreSQL answers for an id it cannot hold, or index in gateway_nodes."""
    for node in ids:
        if "\x00" in node:
            raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte 0x00")
        if len(node.encode()) > 2600:
            raise asyncpg.exceptions.ProgramLimitExceededError("index row size exceeds 2704")


class PgLikeNodes(MemoryNodeIndex):
    async def traces_of(self, project: str, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        _pg_check(ids)
        return await super().traces_of(project, ids)

    async def record(self, project: str, nodes: Mapping[str, tuple[str, str]]) -> None:
        _pg_check(nodes)
        await super().record(project, nodes)


class PgLikeHeld(MemoryHeldLines):
    async def hold(self, lines: list[HeldLine]) -> None:
        _pg_check(line.node_id for line in lines)
        await super().hold(lines)


@pytest.fixture
def pg_env(tmp_path: Path) -> Iterator[Env]:
    with gateway_env(
        tmp_path,
        nodes=PgLikeNodes(),
        held=PgLikeHeld(),
        settings=Settings(),
        max_body_bytes=256 * 1024,
        raise_server_exceptions=False,
    ) as built:
        yield built


def _push(env: Env, lines: list[str]) -> dict:
    answer = env.client.post(
        "/api/sdk/v3/log", params={"id": "r"}, content="\n".join(lines).encode(), headers=MAXIM
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _refused(data: dict) -> dict[int, tuple[str, str]]:
    return {r["line"]: (r["field"], r["reason"]) for r in data["rejected"]}


@pytest.mark.parametrize(
    "line",
    [
        # orjson writes 254 levels at most
        'trace{id=t1,action=add-tool-call,data={"id":"tc1","name":"f","result":%s}}',
        'trace{id=t1,action=add-retrieval,data={"id":"rt1","docs":[%s]}}',
        'tool_call{id=tc0,action=result,data={"result":%s}}',
        # str() of an error recurses past Python's limit
        'generation{id=g1,action=result,data={"result":{"error":%s}}}',
        'generation{id=unknown,action=result,data={"result":{"error":%s}}}',  # held
    ],
)
def test_data_nested_too_deeply_refuses_its_line_only(pg_env: Env, line: str):
    depth = 1000 if "error" in line else 300
    data = _push(pg_env, [
        'trace{id=t1,action=create,data={"name":"x"}}',
        'trace{id=t1,action=add-generation,data={"id":"g1","model":"m","provider":"openai"}}',
        'trace{id=t1,action=add-tool-call,data={"id":"tc0","name":"g"}}',
        line % _nested(depth),
        'trace{id=t1,action=end,data={}}',
    ])  # fmt: skip
    assert _refused(data) == {3: ("data", "is nested too deeply to be encoded as JSON")}
    assert data["accepted"] == 4 and data["held"] == 0
    assert sum(data["dead_lettered"].values()) == 1
    (letter,) = pg_env.dead_letters()
    assert "refused (data: is nested too deeply" in letter["reason"]
    assert sorted(b["type"] for b in pg_env.sent()) == ["generation", "node", "trace", "trace"]


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("span{id=a\x00b,action=end,data={}}", "id", "must not contain NUL (U+0000)"),
        ('trace{id=t1,action=add-span,data={"id":"s\\u0000x","name":"n"}}', "data.id",
         "must not contain NUL (U+0000)"),
        ('trace{id=t1,action=add-tool-call,data={"id":"' + LONG_ID + '"}}', "data.id",
         "String should have at most 1024 characters"),
        ('trace{id=t1,action=add-generation,data={"id":"' + HEAVY_ID + '"}}', "data.id",
         "is over 2048 bytes in UTF-8"),
        ('trace{id=t1,action=add-span,data={"id":7}}', "data.id", "must be a string"),
        (f"trace{{id={LONG_ID},action=create,data={{}}}}", "id",
         "String should have at most 1024 characters"),
        (f"generation{{id={HEAVY_ID},action=result,data={{}}}}", "id",
         "is over 2048 bytes in UTF-8"),
        ("tool_call{id=,action=end,data={}}", "id", "String should have at least 1 character"),
        ("session{id=a\x00,action=create,data={}}", "id", "must not contain NUL (U+0000)"),
    ],
)  # fmt: skip
def test_ids_outside_the_contract_rule_are_refused_before_postgres(
    pg_env: Env, line: str, field: str, reason: str
):
    data = _push(pg_env, [
        'trace{id=t1,action=create,data={"name":"x"}}',
        line,
        'trace{id=t1,action=add-span,data={"id":"s1","name":"ok"}}',
    ])  # fmt: skip
    assert _refused(data) == {1: (field, reason)}
    assert data["accepted"] == 2 and data["held"] == 0
    (letter,) = pg_env.dead_letters()
    assert f"refused ({field}: {reason})" in letter["reason"]
    # Later lines of the valid span still find it.
    assert _push(pg_env, ["span{id=s1,action=end,data={}}"])["accepted"] == 1


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("r/span/a\x00b/files/original/f",
         "the node id in it is invalid (must not contain NUL (U+0000))"),
        (f"r/span/{'x' * 1500}/files/original/f",
         "the node id in it is invalid (String should have at most 1024 characters)"),
        ("r/span/s1/files/original/f\x00",
         "the file id in it is invalid (must not contain NUL (U+0000))"),
    ],
)  # fmt: skip
def test_an_upload_key_naming_an_invalid_id_is_a_400(pg_env: Env, key: str, reason: str):
    answer = pg_env.client.get(
        "/api/sdk/v1/log-repositories/attachments/upload-url", params={"key": key}, headers=MAXIM
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "message": f"query.key: {reason}",
            "errors": [{"field": "query.key", "reason": reason}],
        }
    }
    assert pg_env.sent() == [] and pg_env.dead_letters() == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"id":"s1","name":"n","tags":"x"}', "body.tags"),
        ('{"id":"s1","name":5}', "body.name"),
        ('{"id":"s1","name":"n","startTimestamp":"garbage"}', "body.start_time"),
    ],
)
def test_a_child_whose_create_the_contract_refuses_is_not_recorded(
    pg_env: Env, data: str, field: str
):
    first = _push(pg_env, [
        'trace{id=t1,action=create,data={"name":"x"}}',
        f"trace{{id=t1,action=add-span,data={data}}}",
    ])  # fmt: skip
    assert _refused(first)[1][0] == field
    assert first["accepted"] == 1
    # A later line naming the span that was never made waits for its create (held), instead
    # of being accepted for a node that does not exist.
    later = _push(pg_env, ["span{id=s1,action=end,data={}}"])
    assert later["accepted"] == 0 and later["held"] == 1
    # Its create, valid this time, releases it.
    fixed = _push(pg_env, ['trace{id=t1,action=add-span,data={"id":"s1","name":"n"}}'])
    assert fixed["accepted"] == 1 and fixed["released"] == 1
    assert sorted(b["type"] for b in pg_env.sent()) == ["span", "span", "trace"]


def test_a_refused_update_keeps_a_child_created_in_the_same_batch(pg_env: Env):
    data = _push(pg_env, [
        'trace{id=t1,action=create,data={"name":"x"}}',
        'trace{id=t1,action=add-tool-call,data={"id":"tc1","name":"f"}}',
        'tool_call{id=tc1,action=update,data={"tags":"not a map"}}',
    ])  # fmt: skip
    assert 2 in _refused(data) and data["accepted"] == 2
    assert _push(pg_env, ['tool_call{id=tc1,action=result,data={"result":"ok"}}'])["accepted"] == 1


def test_a_refused_create_is_not_made_by_a_valid_line_after_it_in_the_batch(pg_env: Env):
    data = _push(pg_env, [
        'trace{id=t1,action=create,data={"name":"x"}}',
        'trace{id=t1,action=add-span,data={"id":"s1","name":5}}',
        'span{id=s1,action=update,data={"tags":{"a":"b"}}}',
    ])  # fmt: skip
    assert _refused(data)[1][0] == "body.name"
    later = _push(pg_env, ["span{id=s1,action=end,data={}}"])
    assert later["accepted"] == 0 and later["held"] == 1
