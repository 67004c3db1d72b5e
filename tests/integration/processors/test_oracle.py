"""Issue 4's must-show: 20,000 events (traces with spans and generations, Humanloop logs
with updates, 10% duplicates, shuffled, updates before creates, 1% invalid) through real
Faust workers give output topics equal to an oracle, and the dead-letter topic holds
exactly the invalid events, each with a reason; also with a worker SIGKILLed mid-stream.

Two oracles: the same pure stages run sequentially in one process (the distributed,
reordered, redelivered run must reach exactly the same final values), and a plain
brute-force reference over the distinct events (latest (ts, event_id) per field, sums of
tokens per trace) for the fields that matter most.
"""

from __future__ import annotations

import asyncio
import random
import socket
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from kernel.metrics import ROLE_OFFSETS
from kernel.settings import Settings
from logflume.synthetic import BASE, generate_events, pack_events
from processors.app import app_id
from processors.outcome import Origin
from processors.stage1 import process_events_record
from processors.stage2 import process_entities_record, process_groups_record
from producers.contract import ContractError, merge_carried, pack_record, parse_event
from tests.integration.processors.conftest import Consumed, Workers, consume, produce_records
from tests.integration.replay.history import group_lag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EVENTS = 20_000
BASE_EVENTS = 17_900  # before the duplicates (10%) and invalid events (1%) are added


def _stream(seed: int) -> tuple[list[bytes], set[str]]:
    """The shuffled wire events and the event ids of the invalid ones."""
    rng = random.Random(seed)
    events = [raw for raw in generate_events(BASE_EVENTS, seed=seed) if _valid(raw)]
    events += [rng.choice(events) for _ in range(len(events) // 10)]  # re-sent duplicates
    invalid = [
        orjson.dumps(
            {
                "event_id": f"invalid-{i}",
                "type": "log",
                "ts": _ts(rng).isoformat(),
                "project": "acme",
                "body": {"id": f"data_bad_{i}", "prompt_tokens": -1},
            }
        )
        for i in range(EVENTS // 100)
    ]
    events += invalid
    rng.shuffle(events)  # any order: updates before creates, children before parents
    return events, {orjson.loads(raw)["event_id"] for raw in invalid}


def _ts(rng: random.Random) -> datetime:
    return BASE + timedelta(seconds=rng.randint(0, 3600))


def _valid(raw: bytes) -> bool:
    try:
        parse_event(raw)
    except ContractError:
        return False
    return True


def _final(items: list[dict[str, Any]], *fields: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The highest version of each output, keyed by ``fields`` (with the payload values only
    older versions of an entity carried, as every consumer keeps them)."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for item in items:
        key = tuple(item.get(f) for f in fields)
        current = latest.get(key)
        if current is None or current["version"] <= item["version"]:
            latest[key] = item if current is None else merge_carried(current, item)
    return latest


def sequential_oracle(records: list[tuple[int, bytes]]) -> dict[str, Any]:
    """The pure stages in one process, one record after another."""
    t1: dict[str, Any] = {}
    t2: dict[str, Any] = {}
    t3: dict[str, Any] = {}
    entities: list[dict[str, Any]] = []
    rollups: list[dict[str, Any]] = []
    for offset, (partition, value) in enumerate(records):
        out1 = process_events_record(
            value, Origin("raw", partition, offset), t1.get, max_event_bytes=1 << 20
        )
        t1.update(out1.writes)
        values = [o.value for o in out1.outputs]
        entities += values
        out2 = process_entities_record(
            pack_record(orjson.dumps(v) for v in values), Origin("e", 0, 0), t2.get
        )
        t2.update(out2.writes)
        rollups += [o.value for o in out2.outputs]
        out3 = process_groups_record(
            pack_record(orjson.dumps(o.value) for o in out2.regroup), Origin("g", 0, 0), t3.get
        )
        t3.update(out3.writes)
        rollups += [o.value for o in out3.outputs]
    return {
        "entities": _final(entities, "key"),
        "rollups": _final(rollups, "kind", "project", "id"),
    }


def brute_force_log_fields(events: list[bytes]) -> dict[tuple[str, str], dict[str, Any]]:
    """A plain reference for logs: per (project, reference_id or id), the distinct events in
    (ts, event_id) order, each field taking the last value carried."""
    distinct: dict[str, dict[str, Any]] = {}
    for raw in events:
        item = orjson.loads(raw)
        if item["type"] in ("log", "log_update") and _valid(raw):
            distinct[item["event_id"]] = item
    by_log: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in distinct.values():
        body = item["body"]
        by_log.setdefault((item["project"], body.get("reference_id") or body["id"]), []).append(
            item
        )
    finals: dict[tuple[str, str], dict[str, Any]] = {}
    for key, items in by_log.items():
        if not any(i["type"] == "log" for i in items):
            continue  # updates whose create never came are not emitted
        items.sort(key=lambda i: (parse_event(orjson.dumps(i)).ts, i["event_id"]))
        fields: dict[str, Any] = {}
        for item in items:
            for name in ("output_tokens", "prompt_tokens", "error"):
                if name in item["body"]:
                    fields[name] = item["body"][name]
        finals[key] = fields
    return finals


async def _consume_or_explain(
    settings: Settings,
    topic: str,
    done: Any,
    want: dict[tuple[Any, ...], dict[str, Any]],
    fields: tuple[str, ...],
) -> Consumed:
    """Consume until ``done``; on a timeout, fail naming what is missing or behind."""
    consumed = Consumed()
    try:
        return await consume(settings, topic, done, timeout_s=150, into=consumed)
    except TimeoutError:
        got = _final(consumed.items(), *fields)
        behind = [
            (k, v["version"], got.get(k, {}).get("version"))
            for k, v in want.items()
            if k not in got or got[k]["version"] < v["version"]
        ]
        pytest.fail(
            f"{topic}: {len(behind)} of {len(want)} outputs missing or behind: {behind[:5]}"
        )


async def _end_offsets(settings: Settings, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stage_records(url: str, stage: str, metric: str = "logflume_stage_records_total") -> float:
    """A stage's counter (records by default) from a worker's /metrics (0 if down)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    prefix = f'{metric}{{stage="{stage}"}} '
    return next(
        (float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0
    )


# Windows that never close by themselves: the worker holds every output it computes.
_HOLDING = {
    "LOGFLUME_PROCESSOR_WINDOW_MS": "600000",
    "LOGFLUME_PROCESSOR_WINDOW_RECORDS": "1000000",
}


# States quiet for a second leave memory for the worker's disk (processors.cold); the
# synthetic events span an hour, so nearly every state of the first half goes there.
_COLD = {
    "LOGFLUME_PROCESSOR_STATE_QUIET_S": "1",
    "LOGFLUME_PROCESSOR_TTL_SWEEP_INTERVAL_S": "0.5",
    "LOGFLUME_PROCESSOR_SNAPSHOT_INTERVAL_S": "1",
}


# No state is ever quiet enough (the events span an hour), but at most 300 per stage stay in
# memory after a sweep: the longest-quiet ones leave for the disk because of the budget alone.
_BUDGET = {
    "LOGFLUME_PROCESSOR_STATE_QUIET_S": "86400",
    "LOGFLUME_PROCESSOR_STATE_HOT_MAX": "300",
    "LOGFLUME_PROCESSOR_TTL_SWEEP_INTERVAL_S": "0.5",
    "LOGFLUME_PROCESSOR_SNAPSHOT_INTERVAL_S": "1",
}


# Windows of exactly this many records, and no age limit: the test decides which records a
# worker has flushed and which it holds.
_WINDOW_RECORDS = 50


async def _hold_quiet_states(
    settings: Settings, workers: Workers, records: list[tuple[int, bytes]]
) -> int:
    """Bring a worker to a window that holds states quiet enough for the disk, with a
    snapshot taken after the earlier states moved there: the worker's successor trusts that
    snapshot and the cold store, so a state moved to disk with writes Kafka never got would
    make it take the held records, redelivered, for duplicates. How many records were sent."""
    port = _free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    worker = workers.start(
        "w1",
        real=True,
        LOGFLUME_METRICS_PORT=str(port - ROLE_OFFSETS["process"]),
        **{**_COLD, **_HOLDING, "LOGFLUME_PROCESSOR_WINDOW_RECORDS": str(_WINDOW_RECORDS)},
    )

    def snapshots() -> int:
        return worker.log.read_text(errors="replace").count("stage entities: snapshot of")

    async def reduced(count: int) -> None:
        while await asyncio.to_thread(_stage_records, metrics, "entities") < count:  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    bulk, filler, tail = 8 * _WINDOW_RECORDS, _WINDOW_RECORDS, _WINDOW_RECORDS - 20
    moved = "logflume_stage_states_moved_to_disk_total"
    async with asyncio.timeout(120):
        await produce_records(settings, records[:bulk])  # eight whole windows, flushed
        await reduced(bulk)
        while await asyncio.to_thread(_stage_records, metrics, "entities", moved) < 1000:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # a snapshot is due at the next flush
        taken = snapshots()
        await produce_records(settings, records[bulk : bulk + filler])  # one window, flushed
        while snapshots() == taken:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await produce_records(settings, records[bulk + filler : bulk + filler + tail])
        await reduced(bulk + filler + tail)  # held: the window is not full
    await asyncio.sleep(3)  # six sweeps over the held states, quiet by their event time
    changelog = f"{app_id(settings)}-entity_state-changelog"
    offsets = await _end_offsets(settings, changelog)
    await asyncio.sleep(1)
    assert await _end_offsets(settings, changelog) == offsets  # nothing more sent
    return bulk + filler + tail


async def _run(settings: Settings, workers: Workers, *, kill: str | None = None) -> None:
    """The stream through real workers equals the oracle. ``kill``: ``"mid-stream"``
    SIGKILLs one of two workers once outputs flow; ``"holding"`` SIGKILLs a worker whose
    output windows hold everything it has reduced (its state written, nothing sent);
    ``"cold"`` lets the first half's states leave memory for the disk, SIGKILLs the worker
    and sends the second half (late updates, re-sent duplicates, members joining groups
    whose states are on disk) to its successor; ``"budget"`` the same, the states leaving
    memory because of the memory budget (``_BUDGET``) instead of being quiet."""
    events, invalid_ids = _stream(seed=11)
    assert len(events) >= EVENTS * 0.97
    records = pack_events(events, settings.partitions, seed=11)
    expected = sequential_oracle(records)

    half = len(records) // 2
    if kill == "holding":
        port = _free_port()  # the worker's metrics port: base + the processors' offset
        base = port - ROLE_OFFSETS["process"]
        workers.start("w1", real=True, LOGFLUME_METRICS_PORT=str(base), **_HOLDING)
        await produce_records(settings, records[:half])
        metrics = f"http://127.0.0.1:{port}/metrics"
        async with asyncio.timeout(60):  # the worker has reduced (and holds) some records
            while await asyncio.to_thread(_stage_records, metrics, "entities") < 100:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        changelog = f"{app_id(settings)}-entity_state-changelog"
        assert await _end_offsets(settings, settings.topics.entities) == 0  # all held:
        assert await _end_offsets(settings, changelog) == 0  # outputs and state writes
        workers.kill("w1")  # between buffering and sending
        workers.start("w2", real=True)
    elif kill in ("cold", "budget"):
        tier = _COLD if kill == "cold" else _BUDGET
        port = _free_port()
        base = port - ROLE_OFFSETS["process"]
        workers.start("w1", real=True, LOGFLUME_METRICS_PORT=str(base), **tier)
        await produce_records(settings, records[:half])
        metrics = f"http://127.0.0.1:{port}/metrics"
        moved = "logflume_stage_states_moved_to_disk_total"
        async with asyncio.timeout(90):  # most states of the first half are on disk
            for stage in ("entities", "traces"):
                while await asyncio.to_thread(_stage_records, metrics, stage, moved) < 1000:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # a snapshot of the memory tier without them
        workers.kill("w1")
        workers.start("w2", real=True, **tier)  # the same home: snapshot and cold files
    elif kill == "cold-held":
        half = await _hold_quiet_states(settings, workers, records)
        workers.kill("w1")  # its last windows' states were due for the disk, never sent
        workers.start("w2", real=True, **_COLD)
    else:
        workers.start("w1", real=True)
        if kill:
            workers.start("w2", real=True)
        await produce_records(settings, records[:half])
        if kill:
            # Entities, not records: the windows pack many entities into a record per
            # partition, and a fast worker emits the whole first half in 20 records or fewer.
            await consume(settings, settings.topics.entities, lambda c: len(c.items()) > 20)
            workers.kill("w1")  # mid-stream, no goodbye: its partitions move to w2
    await produce_records(settings, records[half:])

    want_entities = expected["entities"]
    want_rollups = expected["rollups"]

    def entities_done(c: Consumed) -> bool:
        got = _final(c.items(), "key")
        return all(k in got and got[k]["version"] >= v["version"] for k, v in want_entities.items())

    def rollups_done(c: Consumed) -> bool:
        got = _final(c.items(), "kind", "project", "id")
        return all(k in got and got[k]["version"] >= v["version"] for k, v in want_rollups.items())

    entities = await _consume_or_explain(
        settings, settings.topics.entities, entities_done, want_entities, ("key",)
    )
    rollups = await _consume_or_explain(
        settings, settings.topics.rollups, rollups_done, want_rollups, ("kind", "project", "id")
    )
    got_entities = _final(entities.items(), "key")
    got_rollups = _final(rollups.items(), "kind", "project", "id")
    # A session that lost every trace to a smaller session id of the same trace (a
    # retraction) stays as an empty rollup when the order made it exist at all.
    got_rollups = {k: v for k, v in got_rollups.items() if v["counts"] or k in want_rollups}
    assert got_entities == want_entities
    assert got_rollups == want_rollups

    # The plain reference agrees on the merged log fields...
    for (project, identity), fields in brute_force_log_fields(events).items():
        (entity,) = [
            e
            for e in got_entities.values()
            if e["kind"] == "log"
            and e["project"] == project
            and (e.get("reference_id") or e["id"]) == identity
        ]
        for name, value in fields.items():
            assert entity.get(name) == value, (project, identity, name)
    # ...and every trace's token total is the sum over its final entities.
    tokens: dict[tuple[str, str], int] = {}
    for entity in got_entities.values():
        if entity["kind"] != "feedback":
            root = (entity["project"], entity["trace_root"])
            tokens[root] = tokens.get(root, 0) + (entity.get("tokens") or 0)
    for (kind, project, trace_id), rollup in got_rollups.items():
        if kind == "trace":
            assert rollup["tokens"] == tokens[(project, trace_id)]

    dead = await consume(
        settings,
        settings.topics.deadletter,
        lambda c: {i.get("event_id") for i in c.items()} >= invalid_ids,
        timeout_s=30,
    )
    letters = dead.items()
    assert {letter["event_id"] for letter in letters} == invalid_ids

    # The stream is quiet now: every window closes by age, so every record is acknowledged
    # and committed (a record held past its window's flush would stall a rebalance).
    topics = [settings.topics.events, settings.topics.entities, settings.topics.groups]
    async with asyncio.timeout(30):
        while await group_lag(settings, app_id(settings), topics):  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    assert all("prompt_tokens" in letter["reason"] for letter in letters)
    assert all(letter["topic"] == settings.topics.events for letter in letters)


async def test_output_topics_equal_the_oracle(settings: Settings, workers: Workers) -> None:
    await _run(settings, workers)


async def test_same_result_with_a_worker_sigkilled_mid_stream(
    settings: Settings, workers: Workers
) -> None:
    await _run(settings, workers, kill="mid-stream")


async def test_same_result_with_a_worker_sigkilled_while_its_windows_hold_outputs(
    settings: Settings, workers: Workers
) -> None:
    """The records whose outputs a window holds are not acknowledged, so not committed:
    the next worker reads them again and re-emits what the killed one never sent."""
    await _run(settings, workers, kill="holding")


async def test_same_result_when_states_left_memory_before_their_late_events(
    settings: Settings, workers: Workers
) -> None:
    """Issue 18: events for entities, traces and sessions whose states moved to the disk
    tier merge exactly as with unbounded state, also across a SIGKILL and a restart."""
    await _run(settings, workers, kill="cold")


async def test_same_result_when_the_memory_budget_moved_states_to_disk(
    settings: Settings, workers: Workers
) -> None:
    """``state_hot_max``: at a high rate the states of the quiet window outgrow memory, so a
    sweep also moves the longest-quiet states to disk until the budget holds, none of them
    quiet for ``state_quiet_s``; they merge their late events exactly as before, also across
    a SIGKILL and a restart."""
    await _run(settings, workers, kill="budget")


async def test_same_result_when_a_worker_dies_holding_states_due_for_the_disk(
    settings: Settings, workers: Workers
) -> None:
    """A state whose window was not sent when the sweep found it quiet stays in memory: a
    copy on disk ahead of the changelog and the outputs would outlive a SIGKILL, and the
    successor would drop the redelivered events as duplicates (a CI run, rollups behind)."""
    await _run(settings, workers, kill="cold-held")
