"""The public API against the in-memory transport: shapes, ids, validation, strict mode."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import sys
import threading
from typing import Any

import pytest

from producers.contract import ContractError, parse_event, partition_for, routing_key
from producers.sdk import Client, MemoryTransport, SDKSettings
from producers.sdk.stats import DropReason

from .conftest import MakeClient, wait_for

COMPLETION = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
}


def delivered(transport: MemoryTransport) -> list[dict[str, Any]]:
    return transport.bodies()


def test_log_returns_a_generated_id_at_once_and_delivers(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    client = make_client(transport)
    log_id = client.log(
        path="support/answer",
        prompt={"model": "gpt-4o", "temperature": 0.2},
        messages=[{"role": "user", "content": "hi"}],
        output="hello",
        prompt_tokens=5,
        output_tokens=1,
        reference_id="ticket-1",
        session_id="sess-1",
        trace_id="trace-1",
        trace_parent_log_id="data_parent",
        metadata={"tier": "gold"},
        save=False,
    )
    assert re.fullmatch(r"data_[0-9a-f]{32}", log_id)
    assert client.log(id="data_given", output="x") == "data_given"
    assert client.flush(5)
    events = delivered(transport)
    by_id = {e["body"]["id"]: e for e in events}
    assert set(by_id) == {log_id, "data_given"}
    assert by_id[log_id]["body"]["save"] is False and by_id[log_id]["project"] == "unit"
    assert client.stats().sent == 2


def test_update_log_and_feedback(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    client = make_client(transport)
    client.update_log(reference_id="ticket-1", output="final", error=None, provider_latency=1.5)
    client.update_log(id="data_1", output_tokens=9)
    feedback_id = client.feedback(reference_id="ticket-1", value="good", source="user")
    assert feedback_id.startswith("fbk_")
    assert client.flush(5)
    events = delivered(transport)
    updates = [e["body"] for e in events if e["type"] == "log_update"]
    assert {"reference_id": "ticket-1", "output": "final", "error": None,
            "provider_latency": 1.5} in updates  # fmt: skip
    assert {"id": "data_1", "output_tokens": 9} in updates
    (feedback,) = [e["body"] for e in events if e["type"] == "feedback"]
    assert feedback["id"] == feedback_id and feedback["value"] == "good"


def test_trace_span_generation_tree(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    client = make_client(transport)
    trace = client.trace(id="trace-42", name="checkout", session_id="sess-9", tags={"a": "b"})
    span = trace.span(id="span-1", name="retrieve")
    gen = span.generation(
        id="gen-1",
        name="answer",
        provider="openai",
        model="gpt-4o-mini",
        model_parameters={"temperature": 0.1},
        messages=[{"role": "user", "content": "q"}],
    )
    gen.result(COMPLETION)
    direct = trace.generation(provider="anthropic", model="claude-3-5-sonnet")
    direct.error(TimeoutError("provider timed out"), code="504")
    with span.span(name="inner") as inner:
        pass
    span.end()
    trace.update(output="done")
    trace.end()
    assert client.flush(5)
    events = {
        (e["type"], e["body"].get("id") or e["body"]["generation_id"], e["body"].get("action")): e
        for e in delivered(transport)
    }
    assert events[("generation", "gen-1", None)]["body"]["parent_id"] == "span-1"
    assert events[("generation", "gen-1", None)]["body"]["trace_id"] == "trace-42"
    assert "parent_id" not in events[("generation", direct.id, None)]["body"]
    result = events[("generation_result", "gen-1", None)]["body"]
    assert result["result"]["usage"]["total_tokens"] == 8 and "end_time" in result
    failure = events[("generation_error", direct.id, None)]["body"]["error"]
    assert failure == {"message": "provider timed out", "code": "504", "type": "TimeoutError"}
    assert events[("span", inner.id, None)]["body"]["parent_id"] == "span-1"
    assert "end_time" in events[("span", inner.id, "end")]["body"]
    assert "end_time" in events[("trace", "trace-42", "end")]["body"]
    assert events[("trace", "trace-42", None)]["body"]["start_time"]
    for event in delivered(transport):  # every event is valid on the consumer side
        parse_event(__import__("orjson").dumps(event))


def test_records_route_each_event_to_its_entitys_partition(make_client: MakeClient) -> None:
    transport = MemoryTransport(partitions=7)
    client = make_client(transport)
    for i in range(300):
        client.log(reference_id=f"ref-{i % 40}", output=str(i))
    assert client.flush(5)
    for record in transport.records:
        for _, data in record.events:
            assert partition_for(routing_key(parse_event(data)), 7) == record.partition


def test_generation_result_accepts_an_object_with_model_dump(make_client: MakeClient) -> None:
    from pydantic import BaseModel

    class Completion(BaseModel):
        id: str
        object: str
        created: int
        model: str
        choices: list[dict[str, Any]]
        system_fingerprint: str | None = None

    transport = MemoryTransport()
    client = make_client(transport)
    gen = client.trace().generation(provider="openai", model="gpt-4o")
    gen.result(Completion.model_validate({**COMPLETION, "system_fingerprint": "fp_1"}))
    assert client.flush(5)
    (result,) = [e for e in delivered(transport) if e["type"] == "generation_result"]
    assert result["body"]["result"]["system_fingerprint"] == "fp_1"


def test_invalid_events_are_counted_and_warned_once_naming_the_field(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    transport = MemoryTransport()
    client = make_client(transport)
    secret = "sk-secret-payload-123"
    with caplog.at_level(logging.WARNING, logger="producers.sdk"):
        for _ in range(5):
            client.log(prompt_tokens=secret)
        client.log(output="fine")
        assert client.flush(5) is False  # 5 events were refused
    stats = client.stats()
    assert stats.dropped == {DropReason.INVALID: 5}
    assert stats.invalid_fields == {"body.prompt_tokens": 5}
    assert stats.sent == 1
    assert stats.accepted == 1  # an event the contract refuses is dropped, never accepted
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "body.prompt_tokens" in warnings[0].getMessage()
    assert secret not in caplog.text


def test_strict_mode_raises_value_error_naming_the_field(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    client = make_client(transport, strict=True)
    with pytest.raises(ValueError, match=r"body\.prompt_tokens") as info:
        client.log(prompt_tokens=-1)
    assert isinstance(info.value, ContractError)
    with pytest.raises(ValueError, match=r"body\.provider"):
        client.trace().generation(model="gpt-4o")  # provider is required
    with pytest.raises(ValueError, match=r"body\.reference_id"):
        client.update_log(output="x")
    log_id = client.log(output="valid")
    assert client.flush(5)
    assert [e["body"].get("id") for e in delivered(transport) if e["type"] == "log"] == [log_id]


def test_messages_list_is_copied_at_the_call(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    client = make_client(transport, flush_interval_ms=10_000)
    messages = [{"role": "user", "content": "first"}]
    client.log(messages=messages)
    messages.append({"role": "assistant", "content": "later"})
    assert client.flush(5)
    assert len(delivered(transport)[0]["body"]["messages"]) == 1


def test_usable_inside_a_running_event_loop(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    client = make_client(transport)

    async def app() -> bool:
        for i in range(100):
            client.log(output=str(i))
            await asyncio.sleep(0)
        return await client.aflush(5)

    assert asyncio.run(app())
    assert len(delivered(transport)) == 100


def test_threads_emit_concurrently(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    client = make_client(transport)

    def emit() -> None:
        for i in range(2000):
            client.log(output=str(i))

    threads = [threading.Thread(target=emit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(10)
    ids = transport.event_ids()
    assert len(ids) == len(set(ids)) == 8000
    assert client.stats().accepted == 8000


def test_close_context_manager_and_emits_after_close(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    with make_client(transport) as client:
        client.log(output="before")
    assert len(delivered(transport)) == 1
    client.log(output="after")
    assert client.stats().dropped == {DropReason.CLOSED: 1}
    assert client.close() is False  # idempotent, but the emit after close was dropped
    assert client.close() is True  # nothing lost since the previous call


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("LOGFLUME_SDK_PROJECT", "env-project")
    monkeypatch.setenv("LOGFLUME_SDK_SPOOL_FSYNC", "always")
    settings = SDKSettings()
    assert settings.bootstrap_servers == "broker:9092"
    assert settings.project == "env-project" and settings.spool_fsync == "always"
    assert SDKSettings(bootstrap_servers="given:1").bootstrap_servers == "given:1"
    with pytest.raises(ValueError):
        SDKSettings(project="bad project")


def test_overrides_on_top_of_settings(tmp_path: Any) -> None:
    base = SDKSettings(project="a", spool_dir=tmp_path)
    client = Client(base, transport=MemoryTransport(), project="b")
    try:
        assert client.settings.project == "b" and client.settings.spool_dir == tmp_path
    finally:
        client.close(1)


def test_delete_log_sends_a_delete_event_routed_with_the_log(make_client: MakeClient) -> None:
    transport = MemoryTransport()
    client = make_client(transport)
    client.log(reference_id="t-9", output="x")
    client.delete_log(id="data_9", reference_id="t-9")
    assert client.flush(5)
    _, deleted = transport.bodies()
    assert deleted["type"] == "delete"
    assert deleted["body"] == {"kind": "log", "id": "data_9", "reference_id": "t-9"}
    keys = [key for record in transport.records for key, _ in record.events]
    assert keys[0] == keys[1] == b"unit/t-9"


def _worker_priority(client: Client) -> tuple[int, int]:
    """The nice value and the scheduling policy of the client's worker thread."""
    workers = [t for t in threading.enumerate() if t.name == "logflume-sdk-worker"]
    assert workers, "the client's worker thread is not running"
    ids = {t.native_id for t in workers}
    client.log(output="wake")  # started: the worker set its priority before it took events
    assert client.flush(10)
    found = {
        (os.getpriority(os.PRIO_PROCESS, tid), os.sched_getscheduler(tid))
        for tid in ids
        if tid is not None
    }
    assert len(found) == 1, found
    return found.pop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux")
def test_the_worker_thread_runs_nicer_than_the_app_and_never_preempts_it(
    make_client: MakeClient,
) -> None:
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    client = make_client(MemoryTransport())
    assert _worker_priority(client) == (min(19, own + 10), os.SCHED_BATCH)
    client.close(timeout=1)
    same = make_client(MemoryTransport(), worker_nice=0)
    assert _worker_priority(same) == (own, os.sched_getscheduler(0))


def test_events_queued_or_in_flight_give_the_collector_nothing_to_visit_per_event(
    make_client: MakeClient,
) -> None:
    # A collector pass runs on whichever thread allocates when it is due, often the app's,
    # and visits every young object: events waiting as tuples made passes of 1-2 ms there.
    transport = MemoryTransport()
    client = make_client(transport, send_timeout_s=60)
    client.log(output="warm-up")
    assert client.flush(10)
    transport.stall()
    count = 3_000
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects(generation=0))
        for i in range(count):
            client.log(output=f"event {i}", prompt_tokens=i)
        wait_for(lambda: client._worker.inflight_events == count)  # all taken, none acked
        young = len(gc.get_objects(generation=0)) - before
    finally:
        gc.enable()
        transport.release()
    assert young < count / 10, f"{young} objects for the collector for {count} events"
    assert client.flush(10)
    assert len(transport.event_ids()) == count + 1
