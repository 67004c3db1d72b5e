"""Hostile input through the gateway (HTTP) and straight onto the raw topic: every bad event
ends as a 4xx naming its field and reason, or as a dead letter with its reason and origin;
every valid event sent around them lands in PostgreSQL, exactly as the sequential oracle
says (rows, tokens, cost), and nothing else does. The tests of this module share one
pipeline and run in file order: the last one checks the tables."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from logflume.synthetic import pack_events
from processors.codec import RECORD_OVERHEAD_BYTES
from producers.contract import pack_record, unpack_record
from tests.integration.bad_input.cases import BAD_EVENTS, MIB, NASTY_IDS, BadEvent, log_event
from tests.integration.bad_input.conftest import BadInputPipeline, ExpectedLetter
from tests.integration.sinks.harness import eventually
from tests.integration.sinks.stream import run_stages, until_oracle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NEIGHBOURS = 3  # valid events on each side of a bad one


def _post(pipeline: BadInputPipeline, path: str, content: bytes, project: str = "acme") -> Any:
    return httpx.post(
        pipeline.url + path,
        content=content,
        headers={"X-API-KEY": pipeline.env.keys[project], "Content-Type": "application/json"},
        timeout=60,
    )


def _errors_of(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, reason) of a 422 answer (FastAPI's shape, with the contract's names)."""
    return [(d["field"], d["reason"]) for d in answer["detail"]]


def _names(field: str, reason: str, errors: list[tuple[str, str]]) -> bool:
    return any(f == field and reason in r for f, r in errors)


def _acme(events: list[bytes]) -> list[bytes]:
    return [e for e in events if orjson.loads(e)["project"] == "acme"]


@pytest.mark.parametrize("case", BAD_EVENTS, ids=lambda c: c.name)
def test_gateway_refuses_with_field_and_reason(
    bad_pipeline: BadInputPipeline, case: BadEvent
) -> None:
    if case.whole_request is not None:
        # Not standard JSON: the request as a whole is refused (nothing of it is published).
        answer = _post(bad_pipeline, "/v1/events", b"[" + case.raw + b"]")
        assert answer.status_code == 422, answer.text
        field, reason = case.whole_request
        assert _names(field, reason, _errors_of(answer.json())), answer.json()
        return
    before = _acme(bad_pipeline.take_valid(2 * NEIGHBOURS))
    after = _acme(bad_pipeline.take_valid(2 * NEIGHBOURS))
    body = pack_record([*before, case.raw, *after])
    answer = _post(bad_pipeline, "/v1/events", body)
    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    bad = results[len(before)]
    assert bad["status"] == "rejected"
    assert any(e["field"] == case.field and case.reason in e["reason"] for e in bad["errors"]), bad
    others = results[: len(before)] + results[len(before) + 1 :]
    assert [r["status"] for r in others] == ["accepted"] * len(others)
    bad_pipeline.gateway_sent += [*before, *after]


def test_gateway_refuses_a_10_mib_event_alone_413_and_in_a_batch_207(
    bad_pipeline: BadInputPipeline,
) -> None:
    huge = orjson.dumps(log_event("bad-huge", output="x" * (10 * MIB)))
    alone = _post(bad_pipeline, "/v1/events", huge)
    assert alone.status_code == 413, alone.text[:300]
    neighbours = _acme(bad_pipeline.take_valid(2 * NEIGHBOURS))
    answer = _post(bad_pipeline, "/v1/events", pack_record([*neighbours, huge]))
    assert answer.status_code == 207, answer.text[:300]
    results = answer.json()["results"]
    assert results[-1]["status"] == "rejected"
    assert results[-1]["errors"][0]["field"] == "event"
    assert "over the limit" in results[-1]["errors"][0]["reason"]
    assert all(r["status"] == "accepted" for r in results[:-1])
    bad_pipeline.gateway_sent += neighbours


def test_gateway_humanloop_route_names_the_field(bad_pipeline: BadInputPipeline) -> None:
    for body, field in (
        ({"path": "p", "prompt_tokens": -1}, "prompt_tokens"),
        ({"path": "p", "output_tokens": "many"}, "output_tokens"),
        ({"path": "p", "log_id": "data\u0000x"}, "log_id"),
        ({"path": "p", "reference_id": "r" * 1025}, "reference_id"),
    ):
        answer = _post(bad_pipeline, "/v5/prompts/log", orjson.dumps(body))
        assert answer.status_code == 422, answer.text
        assert any(field in f for f, _ in _errors_of(answer.json())), answer.json()


@pytest.mark.parametrize(
    "path",
    [
        "/v5/logs/..%2F..%2Fetc%2Fpasswd",
        "/v5/logs/x'%3B%20DROP%20TABLE%20logs%3B--",
        "/traces/%00",
        "/logs?reference_id=r%00",
        "/sessions/" + "a" * 5000,
    ],
)
def test_gateway_reads_of_hostile_ids_are_4xx(bad_pipeline: BadInputPipeline, path: str) -> None:
    answer = httpx.get(
        bad_pipeline.url + path, headers={"X-API-KEY": bad_pipeline.env.keys["acme"]}, timeout=30
    )
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])


@pytest.mark.parametrize(
    ("path", "field", "reason"),
    [
        ("/traces/a%00b", "path.id", "must not contain NUL"),
        ("/v5/logs/" + "l" * 1025, "path.id", "at most 1024 characters"),
        ("/logs?session_id=s%00", "query.session_id", "must not contain NUL"),
    ],
)
def test_gateway_read_of_a_bad_id_is_422_naming_field_and_reason(
    bad_pipeline: BadInputPipeline, path: str, field: str, reason: str
) -> None:
    answer = httpx.get(
        bad_pipeline.url + path, headers={"X-API-KEY": bad_pipeline.env.keys["acme"]}, timeout=30
    )
    assert answer.status_code == 422, answer.text[:300]
    assert _names(field, reason, _errors_of(answer.json())), answer.json()


def _nasty_log(n: int, nasty: str, path: str) -> bytes:
    """A valid log whose ids (its own, its reference, its session) are all ``nasty``."""
    ids = {"id": f"{nasty}/{path}", "reference_id": f"{nasty}/{path}/ref"}
    event = log_event(f"ok-nasty-{path}-{n}", **ids, session_id=nasty, prompt_tokens=n + 1)
    return orjson.dumps(event)


def test_gateway_accepts_ids_of_any_text(bad_pipeline: BadInputPipeline) -> None:
    """Spaces, ``/``, ``#``, ``|``, ``%``, ``?``, quotes, non-ASCII, 1,024 characters."""
    events = [_nasty_log(n, nasty[:1000], "gw") for n, nasty in enumerate(NASTY_IDS)]
    answer = _post(bad_pipeline, "/v1/events", pack_record(events))
    assert answer.status_code == 202, answer.text[:300]
    bad_pipeline.gateway_sent += events


async def test_raw_topic_dead_letters_each_bad_event(bad_pipeline: BadInputPipeline) -> None:
    """A foreign producer writes straight to the raw topic: each bad event becomes a dead
    letter at its exact origin; the valid events of the same record are kept."""
    settings = bad_pipeline.env.settings
    records = [
        (p, r)
        for p, r in pack_events(bad_pipeline.raw_pool, settings.partitions, seed=3)
        if len(unpack_record(r)) >= 2
    ]
    planned: list[tuple[int, bytes, int, BadEvent]] = []
    for (partition, record), case in zip(records, BAD_EVENTS, strict=False):
        if case.whole_record:
            planned.append((partition, case.raw, -1, case))
            continue
        events = unpack_record(record)
        middle = len(events) // 2
        value = pack_record([*events[:middle], case.raw, *events[middle:]])
        planned.append((partition, value, middle, case))
    # An event over the size limit in a record under the record limit; and a NUL in text,
    # which is valid (stored with U+FFFD, DESIGN: PostgreSQL text cannot hold U+0000).
    partition, record = records[len(BAD_EVENTS)]
    over = orjson.dumps(log_event("bad-oversize", output="y" * (MIB + MIB // 2)))
    over_case = BadEvent("oversize", over, "event", "over the limit of")
    planned.append((partition, pack_record([*unpack_record(record), over]), -2, over_case))
    nul = orjson.dumps(log_event("ok-nul-text", output="a\u0000b", prompt_tokens=7))
    kept = records[len(BAD_EVENTS) + 1 :]
    kept.append((0, pack_record([nul])))
    kept += [
        (0, pack_record([_nasty_log(n, nasty[:1000], "raw")])) for n, nasty in enumerate(NASTY_IDS)
    ]
    scalars = BadEvent("not_objects", b"", "", "Input should be")

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        max_request_size=settings.max_record_bytes + RECORD_OVERHEAD_BYTES,
    )
    await producer.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):  # 10 MiB never enters the raw topic
            await producer.send(settings.topics.events, b"[" + b"z" * (10 * MIB) + b"]")
        topic = settings.topics.events
        for partition, value, index, case in planned:
            sent = await (await producer.send(topic, value, partition=partition))
            bad_pipeline.raw_records.append((partition, value))
            if index == -2:
                index = len(unpack_record(value)) - 1
            field = "" if case.whole_record else case.field
            bad_pipeline.letters.append(
                ExpectedLetter(partition, sent.offset, index, field, case.reason)
            )
        for partition, value in [*kept, (1, b'[1, "x", null]')]:
            sent = await (await producer.send(topic, value, partition=partition))
            bad_pipeline.raw_records.append((partition, value))
        for index in range(3):  # the three items of the last record
            bad_pipeline.letters.append(
                ExpectedLetter(1, sent.offset, index, scalars.field, scalars.reason)
            )
    finally:
        await producer.stop()

    conn = await asyncpg.connect(settings.dsn, timeout=30)
    try:

        async def all_there() -> bool:
            found = await conn.fetchval(
                "SELECT count(*) FROM dead_letters WHERE topic = $1", topic, timeout=30
            )
            return bool(found >= len(bad_pipeline.letters))

        await eventually(all_there, timeout_s=180, what="the dead letters of the raw records")
        rows = await conn.fetch(
            'SELECT "partition", "offset", event_index, reason, raw FROM dead_letters',
            timeout=30,
        )
    finally:
        await conn.close()
    stored = {(r["partition"], r["offset"], r["event_index"]): r for r in rows}
    assert len(rows) == len(bad_pipeline.letters), sorted(stored)
    for letter in bad_pipeline.letters:
        row = stored.get((letter.partition, letter.offset, letter.index))
        assert row is not None, f"no dead letter for {letter}"
        assert row["reason"].startswith(letter.field), (letter, row["reason"])
        assert letter.reason in row["reason"], (letter, row["reason"])
        assert row["raw"], letter  # the event is kept to look at (or its first 4 KiB)


async def test_every_valid_event_around_them_landed(bad_pipeline: BadInputPipeline) -> None:
    """The final tables equal the oracle of exactly the valid events that were sent (the
    gateway's accepted ones as it published them, and the raw records as written)."""
    settings = bad_pipeline.env.settings
    published = [orjson.dumps(orjson.loads(raw)) for raw in bad_pipeline.gateway_sent]
    records = pack_events(published, settings.partitions) + bad_pipeline.raw_records
    oracle = run_stages(settings, records).oracle
    assert oracle.rows, "nothing valid was sent"
    # The oracle numbers dead letters by offsets of its own; the raw-topic test checked
    # every one at its real origin, and the count of all of them.
    oracle.dead_letters.clear()
    conn = await asyncpg.connect(settings.dsn, timeout=30)
    try:
        await until_oracle(conn, oracle, timeout_s=180)
        stored = await conn.fetchval(
            "SELECT output FROM logs WHERE id = 'data_ok-nul-text'", timeout=30
        )
        assert stored == "a\ufffdb"
    finally:
        await conn.close()
    _read_back_nasty_ids(bad_pipeline)


def _read_back_nasty_ids(pipeline: BadInputPipeline) -> None:
    """Every nasty id round-trips through the read API, percent-encoded in the URL."""
    headers = {"X-API-KEY": pipeline.env.keys["acme"]}
    for way in ("gw", "raw"):
        for whole in NASTY_IDS:
            nasty = whole[:1000]
            log_id, reference_id = f"{nasty}/{way}", f"{nasty}/{way}/ref"
            log = httpx.get(f"{pipeline.url}/v5/logs/{quote(log_id, safe='')}", headers=headers)
            assert log.status_code == 200, (nasty, log.text[:300])
            assert (log.json()["id"], log.json()["reference_id"]) == (log_id, reference_id)
            listed = httpx.get(
                f"{pipeline.url}/logs", params={"reference_id": reference_id}, headers=headers
            )
            assert [r["id"] for r in listed.json()["records"]] == [log_id], nasty
            session = httpx.get(f"{pipeline.url}/sessions/{quote(nasty, safe='')}", headers=headers)
            assert session.status_code == 200, (nasty, session.text[:300])
            assert session.json()["id"] == nasty
