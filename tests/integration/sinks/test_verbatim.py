"""Hostile text is stored verbatim: SQL-looking strings, unicode from every plane, odd
metadata keys. NUL characters become U+FFFD in stage 1 (``processors.text``), and the sink
never stalls on them, not even on a NUL that bypassed stage 1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from logflume.synthetic import BASE, event, pack_events
from producers.contract import pack_record
from tests.integration.sinks.harness import SinkEnv, running_sink
from tests.integration.sinks.stream import Published, Stream, oracle_mismatches, publish, run_stages

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SQL = "'); DROP TABLE logs;--"
# One code point of each of the 17 planes (4 to 13 are unassigned, still valid UTF-8), then
# named samples: BMP, an emoji ZWJ sequence (plane 1), CJK extension B (plane 2),
# CJK extension G (plane 3), a tag sequence (plane 14: the flag of Scotland), private use
# (planes 15, 16), combining marks, right-to-left text, BOM, a BMP noncharacter.
PLANES = "".join(chr((plane << 16) | 0x100) for plane in range(17))
UNICODE = (
    PLANES
    + " héllo 中文 Ω ß "
    + "👩\u200d👩\u200d👧 😀 "
    + "𠀀𠮷 "
    + "\U00030000 "
    + "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f "
    + "\U000f0000\U0010fffd e\u0301 مرحبا \ufeff\uffff"
)
# Text that merely looks like escapes or placeholders, and control characters.
TRICKY = "\\u0000 \\x00 $1 %s {0} \x01\x1f\t\r\n \"quoted\" 'single' \\ back\\slash"
ODD_KEYS = [
    "",
    " ",
    ".",
    "..",
    "a.b.c",
    "metadata.x",
    "tags.y",
    "'",
    '"',
    "\\",
    SQL,
    "$1",
    "%s",
    "\\u0000",
    "\t",
    "ключ",
    "🔑",
    "𠮷",
    "\U000e0067",
    PLANES,
    "k" * 5000,
]


def _odd_metadata(salt: str) -> dict[str, Any]:
    found: dict[str, Any] = {key: f"{salt}:{key[:40]}:{UNICODE}" for key in ODD_KEYS}
    found["nested"] = {"'": [SQL, UNICODE, None, 1.5, True, {"": TRICKY}]}
    return found


async def _sink(env: SinkEnv, events: list[bytes]) -> Stream:
    """Run the stages over ``events``, publish, sink until all is written."""
    stream = run_stages(env.settings, pack_events(events, env.settings.partitions), len(events))
    published = await publish(env.settings, stream.records)
    async with running_sink(env.settings) as sink:
        await sink.wait_records(published)
    return stream


async def test_hostile_strings_and_keys_are_stored_verbatim(sink_env: SinkEnv) -> None:
    p, t = "acme", BASE
    ms = timedelta(milliseconds=1)
    log_metadata = _odd_metadata("log")
    update_metadata = {"'": f"updated {SQL}", "🆕": UNICODE, "": "updated empty key"}
    path = f"support/{SQL}"
    events = [
        event(
            "e1",
            "log",
            t,
            p,
            {
                "id": "data_nasty",
                "reference_id": "ref-nasty",
                "path": path,
                "prompt": {
                    "model": "gpt-4o",
                    "provider": "openai",
                    "template": [{"role": "system", "content": UNICODE}],
                },
                "messages": [{"role": "user", "content": SQL + UNICODE + TRICKY}],
                "inputs": _odd_metadata("inputs"),
                "output": "first",
                "metadata": log_metadata,
                "user": SQL,
                "source": UNICODE,
                "environment": SQL,
                "prompt_tokens": 3,
                "output_tokens": 4,
                "created_at": t.isoformat(),
            },
        ),
        event(
            "e2",
            "log_update",
            t + ms,
            p,
            {
                "reference_id": "ref-nasty",
                "output": SQL + UNICODE + TRICKY,
                "metadata": update_metadata,
                "error": SQL,
            },
        ),
        event(
            "e3",
            "feedback",
            t + 2 * ms,
            p,
            {
                "id": "fb-nasty",
                "reference_id": "ref-nasty",
                "value": SQL + UNICODE,
                "metadata": _odd_metadata("fb"),
                "user": UNICODE,
            },
        ),
        event(
            "e4",
            "trace",
            t,
            p,
            {
                "id": "tr-nasty",
                "name": SQL,
                "input": UNICODE,
                "output": SQL + TRICKY,
                "tags": {"'": SQL, "": "empty", "🔑": UNICODE[:200], "a.b": "dot"},
                "metadata": _odd_metadata("trace"),
                "session_id": "sess-nasty",
            },
        ),
        event(
            "e5",
            "span",
            t + ms,
            p,
            {
                "id": "sp-nasty",
                "trace_id": "tr-nasty",
                "name": UNICODE[:500],
                "metadata": _odd_metadata("span"),
            },
        ),
        event(
            "e6",
            "generation",
            t + ms,
            p,
            {
                "id": "gen-nasty",
                "trace_id": "tr-nasty",
                "parent_id": "sp-nasty",
                "name": SQL,
                "provider": "openai",
                "model": "gpt-4o",
                "model_parameters": _odd_metadata("params"),
                "messages": [{"role": "user", "content": UNICODE + TRICKY}],
            },
        ),
        event(
            "e7",
            "generation_result",
            t + 2 * ms,
            p,
            {
                "generation_id": "gen-nasty",
                "trace_id": "tr-nasty",
                "result": {
                    "id": "cmpl-1",
                    "created": 1,
                    "model": "gpt-4o",
                    "choices": [{"message": {"role": "assistant", "content": SQL + UNICODE}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 6},
                },
            },
        ),
    ]
    stream = await _sink(sink_env, events)
    conn = sink_env.conn
    assert await oracle_mismatches(conn, stream.oracle) == []

    log = await conn.fetchrow(
        'SELECT output, error, path, "user", source, environment, metadata::text AS metadata, '
        "inputs::text AS inputs, messages::text AS messages FROM logs WHERE id = 'data_nasty'"
    )
    assert log is not None
    assert log["output"] == SQL + UNICODE + TRICKY
    assert (log["error"], log["path"], log["user"]) == (SQL, path, SQL)
    assert (log["source"], log["environment"]) == (UNICODE, SQL)
    assert orjson.loads(log["metadata"]) == {**log_metadata, **update_metadata}
    assert orjson.loads(log["inputs"]) == _odd_metadata("inputs")
    assert orjson.loads(log["messages"])[0]["content"] == SQL + UNICODE + TRICKY
    assert await conn.fetchval("SELECT path FROM prompts") == path

    trace = await conn.fetchrow(
        "SELECT name, input, output, tags::text AS tags, metadata::text AS metadata "
        "FROM traces WHERE id = 'tr-nasty'"
    )
    assert trace is not None
    assert (trace["name"], trace["input"], trace["output"]) == (SQL, UNICODE, SQL + TRICKY)
    assert orjson.loads(trace["tags"]) == {"'": SQL, "": "empty", "🔑": UNICODE[:200], "a.b": "dot"}
    assert orjson.loads(trace["metadata"]) == _odd_metadata("trace")
    span = await conn.fetchrow("SELECT name, metadata::text AS m FROM spans")
    assert span is not None
    assert (span["name"], orjson.loads(span["m"])) == (UNICODE[:500], _odd_metadata("span"))
    generation = await conn.fetchrow(
        "SELECT name, model_parameters::text AS mp, messages::text AS msgs, "
        "result::text AS result FROM generations"
    )
    assert generation is not None
    assert generation["name"] == SQL
    assert orjson.loads(generation["mp"]) == _odd_metadata("params")
    assert orjson.loads(generation["msgs"])[0]["content"] == UNICODE + TRICKY
    content = orjson.loads(generation["result"])["choices"][0]["message"]["content"]
    assert content == SQL + UNICODE
    feedback = await conn.fetchrow(
        'SELECT value::text AS v, "user", metadata::text AS m FROM feedback'
    )
    assert feedback is not None
    assert orjson.loads(feedback["v"]) == SQL + UNICODE
    assert (feedback["user"], orjson.loads(feedback["m"])) == (UNICODE, _odd_metadata("fb"))
    # And of course every table is still there.
    assert await conn.fetchval("SELECT count(*) FROM logs") == 1


async def test_nul_becomes_replacement_character_and_never_stalls_the_sink(
    sink_env: SinkEnv,
) -> None:
    p, t = "acme", BASE
    ms = timedelta(milliseconds=1)
    events = [
        event(
            "n1",
            "log",
            t,
            p,
            {
                "id": "data_nul",
                "output": "before\x00after",
                "messages": [{"role": "user", "content": "\x00"}],
                "metadata": {"a\x00b": "x\x00y", "plain": "\x00", "\x00": ["\x00", {"\x00": 1}]},
                "prompt_tokens": 1,
                "output_tokens": 1,
            },
        ),
        event(
            "n2",
            "log_update",
            t + ms,
            p,
            {"id": "data_nul", "stdout": "out\x00put", "metadata": {"upd\x00": "v\x00"}},
        ),
        event(
            "n3", "feedback", t + ms, p, {"id": "fb-nul", "log_id": "data_nul", "value": "\x00bad"}
        ),
        event(
            "n4",
            "trace",
            t,
            p,
            {"id": "tr-nul", "name": "n\x00", "tags": {"t\x00": "v\x00"}, "input": "\x00\x00"},
        ),
    ]
    # A stage output with a raw NUL that bypassed stage 1 (a foreign producer): PostgreSQL
    # refuses it; it must become a dead letter while the record's other value lands.
    foreign_ok = {
        "kind": "trace",
        "project": p,
        "id": "tr-foreign-ok",
        "version": 1,
        "name": "fine",
        "partial": False,
    }
    foreign_nul = {**foreign_ok, "id": "tr-foreign-nul", "name": "raw\x00nul"}
    foreign = pack_record([orjson.dumps(foreign_nul), orjson.dumps(foreign_ok)])
    extra = [Published(sink_env.settings.topics.entities, 0, foreign)]
    settings = sink_env.settings
    stream = run_stages(settings, pack_events(events, settings.partitions), len(events))
    stream.oracle.add("entities", foreign_ok)
    assert all(b"\\u0000" not in r.value for r in stream.records if "deadletter" not in r.topic)
    # Ordinary traffic published after them lands too: the sink did not stall.
    later = [event("n5", "log", t + 5 * ms, p, {"id": "data_after", "output": "after"})]
    after = run_stages(settings, pack_events(later, settings.partitions), len(later))
    stream.oracle.merge(after.oracle)
    async with running_sink(settings) as sink:
        published = await publish(settings, [*stream.records, *extra])
        await sink.wait_records(published)
        published += await publish(settings, after.records)
        await sink.wait_records(published)

    conn = sink_env.conn
    assert await oracle_mismatches(conn, stream.oracle) == []
    log = await conn.fetchrow(
        "SELECT output, stdout, messages::text AS msgs, metadata::text AS m FROM logs "
        "WHERE id = 'data_nul'"
    )
    assert log is not None
    assert (log["output"], log["stdout"]) == ("before\ufffdafter", "out\ufffdput")
    assert orjson.loads(log["msgs"])[0]["content"] == "\ufffd"
    assert orjson.loads(log["m"]) == {
        "a\ufffdb": "x\ufffdy",
        "plain": "\ufffd",
        "\ufffd": ["\ufffd", {"\ufffd": 1}],
        "upd\ufffd": "v\ufffd",
    }
    assert await conn.fetchval("SELECT value::text FROM feedback") == '"\ufffdbad"'
    trace = await conn.fetchrow(
        "SELECT name, input, tags::text AS tags FROM traces WHERE id = 'tr-nul'"
    )
    assert trace is not None
    assert (trace["name"], trace["input"]) == ("n\ufffd", "\ufffd\ufffd")
    assert orjson.loads(trace["tags"]) == {"t\ufffd": "v\ufffd"}
    assert await conn.fetchval("SELECT output FROM logs WHERE id = 'data_after'") == "after"
    assert await conn.fetchval("SELECT name FROM traces WHERE id = 'tr-foreign-ok'") == "fine"
    letter = await conn.fetchrow(
        "SELECT topic, event_id, reason, raw FROM dead_letters WHERE reason LIKE '%refused%'"
    )
    assert letter is not None
    assert (letter["topic"], letter["event_id"]) == (
        sink_env.settings.topics.entities,
        "tr-foreign-nul",
    )
    assert orjson.loads(letter["raw"]) == foreign_nul
    assert "\x00" not in letter["reason"]
