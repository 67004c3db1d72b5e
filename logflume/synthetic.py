"""A realistic synthetic event stream (tests, benchmarks, replay history), encoded as on the wire.

:func:`generate_events` builds Maxim traces (spans, generations, results and errors) and
Humanloop logs (creates, updates before and after their create, feedback; Flow logs that
open a trace as incomplete and are mostly completed later, Tool logs in traces, evaluator
logs judging a log), with re-sent
duplicates, local reordering, save=false, caller-given costs and a few invalid events.
:func:`pack_events` packs them into raw-topic records the way the SDK does (``pack_record``,
one partition per record from the murmur2 partition of each event's routing key).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from producers.contract import (
    encode_event,
    pack_record,
    partition_for,
    routing_key,
    validate_event,
)

__all__ = [
    "BASE",
    "PROJECTS",
    "HeavyWorkload",
    "event",
    "generate_events",
    "generate_heavy_events",
    "pack_events",
]

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PROJECTS = ("acme", "globex")
_MODELS = (
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("openai", "mystery-model-9000"),  # unknown to the price table: null cost
)


def _prompt(k: int) -> dict[str, Any]:
    provider, model = _MODELS[k % len(_MODELS)]
    return {
        "path": f"support/answer-{k}",
        "prompt": {
            "model": model,
            "provider": provider,
            "template": [{"role": "system", "content": f"You are support agent #{k}."}],
            "temperature": round(0.1 * (k % 10), 1),
        },
    }


def event(event_id: str, etype: str, ts: datetime, project: str, body: dict[str, Any]) -> bytes:
    """One valid event as wire bytes (validated by the contract)."""
    raw = {
        "event_id": event_id,
        "type": etype,
        "ts": ts.isoformat(),
        "project": project,
        "body": body,
    }
    return encode_event(validate_event(raw))


@dataclass(slots=True)
class _Gen:
    rng: random.Random
    sessions: int  # pool sizes grow with the stream, so that groups stay realistic
    prompts: int
    clock: datetime = BASE
    events: list[tuple[datetime, bytes]] = field(default_factory=list)
    serial: int = 0

    def tick(self, low_ms: int = 1, high_ms: int = 400) -> datetime:
        self.clock += timedelta(milliseconds=self.rng.randint(low_ms, high_ms))
        return self.clock

    def emit(
        self, etype: str, project: str, body: dict[str, Any], at: datetime | None = None
    ) -> None:
        self.serial += 1
        ts = at or self.tick()
        self.events.append((ts, event(f"ev-{self.serial}", etype, ts, project, body)))

    def session(self) -> str | None:
        return f"sess-{self.rng.randint(1, self.sessions)}" if self.rng.random() < 0.6 else None


def _usage(rng: random.Random) -> dict[str, Any]:
    prompt, completion = rng.randint(20, 4000), rng.randint(1, 1200)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": rng.randint(0, prompt // 2)},
        "completion_tokens_details": {"reasoning_tokens": rng.randint(0, completion // 3)},
    }


def _maxim_trace(gen: _Gen, n: int) -> None:
    rng, project = gen.rng, rng_project(gen.rng)
    trace_id = f"tr-{n}"
    start = gen.tick()
    body: dict[str, Any] = {
        "id": trace_id,
        "name": rng.choice(["chat", "rag", "agent"]),
        "tags": {"env": rng.choice(["prod", "staging"]), "team": "core"},
        "metadata": {"customer": f"c{rng.randint(1, 9)}", "n": n},
        "input": f"question {n}",
        "start_time": start.isoformat(),
    }
    if (session := gen.session()) is not None:
        body["session_id"] = session
    gen.emit("trace", project, body, start)
    parent: str | None = None
    for s in range(rng.randint(1, 3)):
        span_id = f"{trace_id}.s{s}"
        span = {
            "id": span_id,
            "trace_id": trace_id,
            "name": f"step-{s}",
            "start_time": gen.tick().isoformat(),
            "metadata": {"depth": s},
        }
        if parent is not None and rng.random() < 0.5:
            span["parent_id"] = parent
        gen.emit("span", project, span)
        for g in range(rng.randint(1, 2)):
            gen_id = f"{span_id}.g{g}"
            provider, model = rng.choice(_MODELS)
            gen.emit(
                "generation",
                project,
                {
                    "id": gen_id,
                    "trace_id": trace_id,
                    "parent_id": span_id,
                    "name": "llm",
                    "provider": provider,
                    "model": model,
                    "model_parameters": {"temperature": rng.choice([0, 0.2, 0.7])},
                    "messages": [{"role": "user", "content": f"question {n}.{s}.{g}"}],
                    "start_time": gen.tick().isoformat(),
                },
            )
            if rng.random() < 0.9:
                result = {
                    "id": f"chatcmpl-{n}-{s}-{g}",
                    "created": 1_772_000_000 + n,
                    "model": model,
                    "usage": _usage(rng),
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "ok"},
                        }
                    ],
                }
                gen.emit(
                    "generation_result",
                    project,
                    {
                        "generation_id": gen_id,
                        "trace_id": trace_id,
                        "result": result,
                        "end_time": gen.tick().isoformat(),
                    },
                )
            else:
                gen.emit(
                    "generation_error",
                    project,
                    {
                        "generation_id": gen_id,
                        "trace_id": trace_id,
                        "error": {"message": "rate limited", "code": "429"},
                    },
                )
        gen.emit("span", project, {"id": span_id, "trace_id": trace_id, "action": "end"})
        parent = span_id
    if rng.random() < 0.7:
        gen.emit(
            "trace",
            project,
            {
                "id": trace_id,
                "action": "update",
                "output": f"answer {n}",
                "metadata": {"score": rng.random()},
            },
        )
    if rng.random() < 0.9:
        gen.emit("trace", project, {"id": trace_id, "action": "end"})


def rng_project(rng: random.Random) -> str:
    return PROJECTS[0] if rng.random() < 0.75 else PROJECTS[1]


# A log joins the trace of one of its project's latest roots. Kept per project and only the
# latest: a scan of every root so far for each log made 1,000,000 events take minutes.
_RECENT_ROOTS = 10


def _humanloop_log(gen: _Gen, n: int, parents: dict[str, list[str]]) -> None:
    rng, project = gen.rng, rng_project(gen.rng)
    log_id = f"data_{n}"
    reference = f"ref-{n}" if rng.random() < 0.7 else None
    prompt = _prompt(rng.randrange(gen.prompts))
    created = gen.tick()
    body: dict[str, Any] = {
        "id": log_id,
        "path": prompt["path"],
        "prompt": prompt["prompt"],
        "messages": [{"role": "user", "content": f"help me with {n}"}],
        "output": f"draft {n}",
        "prompt_tokens": rng.randint(10, 3000),
        "output_tokens": rng.randint(1, 800),
        "created_at": created.isoformat(),
        "start_time": created.isoformat(),
        "end_time": (created + timedelta(milliseconds=rng.randint(50, 5000))).isoformat(),
        "metadata": {"tenant": f"t{rng.randint(1, 5)}", "attempt": 1},
        "source": "sdk",
        "user": f"user-{rng.randint(1, 30)}",
        "save": rng.random() > 0.05,
    }
    if reference is not None:
        body["reference_id"] = reference
    if (session := gen.session()) is not None:
        body["session_id"] = session
    if rng.random() < 0.1:
        body.update(prompt_cost=0.0012, output_cost=0.0034)  # a caller-given cost wins
    recent = parents.setdefault(project, [])  # the project's latest trace roots
    kind = rng.random()  # Humanloop's other log kinds: a Flow opens a trace, a Tool joins one
    if recent and rng.random() < 0.2:
        root = rng.choice(recent)
        body.update(trace_id=root, trace_parent_log_id=root)
        if kind < 0.3:
            _as_kind(body, "tool", "tools/lookup", {"function": {"name": "lookup"}})
    else:
        recent.append(log_id)
        if len(recent) > _RECENT_ROOTS:
            del recent[0]
        if kind < 0.2:
            _as_kind(body, "flow", "flows/support", {"attributes": {"v": n % 3}})
            body["log_status"] = "incomplete"
    gen.emit("log", project, body, created)
    target = {"reference_id": reference} if reference else {"id": log_id}
    if body.get("log_status") == "incomplete" and rng.random() < 0.8:
        gen.emit("log_update", project, {**target, "log_status": "complete"}, gen.tick())
    if rng.random() < 0.1:  # an evaluator's judgment on the log
        parent = {"parent_reference_id": reference} if reference else {"parent_id": log_id}
        judgment = {"id": f"data_{n}_eval", "log_kind": "evaluator", "path": "evals/helpful",
                    "file": {"return_type": "boolean"}, "judgment": rng.random() < 0.7,
                    **parent}  # fmt: skip
        gen.emit("log", project, judgment, gen.tick())
    for u in range(rng.choice([0, 0, 1, 2, 3])):
        update: dict[str, Any] = {**target}
        if rng.random() < 0.6:
            update["output"] = f"final {n}.{u}"
        if rng.random() < 0.5:
            update["output_tokens"] = rng.randint(1, 900)
        if rng.random() < 0.5:
            update["metadata"] = {"attempt": u + 2, f"k{u}": rng.random()}
        if rng.random() < 0.1:
            update["error"] = "upstream timeout"
        if rng.random() < 0.2:
            update["judgment"] = rng.choice([True, 0.5, "fine"])
        # An update may be emitted (and arrive) before its create: stage 1 keeps it.
        at = created - timedelta(milliseconds=5) if rng.random() < 0.1 else gen.tick()
        gen.emit("log_update", project, update, at)
    for f in range(rng.choice([0, 0, 1, 2])):
        fb = {
            "id": f"fb-{n}-{f}",
            "value": rng.choice([True, 0.8, "good", ["a", "b"]]),
            "source": "user",
            "metadata": {"via": "widget"},
        }
        fb.update({"reference_id": reference} if reference else {"log_id": log_id})
        gen.emit("feedback", project, fb)


def _as_kind(body: dict[str, Any], kind: str, path: str, details: dict[str, Any]) -> None:
    """A Flow's or Tool's log instead of a prompt's: its File, no prompt and no usage."""
    for name in ("prompt", "prompt_tokens", "output_tokens", "prompt_cost", "output_cost"):
        body.pop(name, None)
    body.update(log_kind=kind, path=path, file=details)


def _invalid(gen: _Gen, n: int) -> bytes:
    """An event the contract rejects (stage 1 dead-letters it with its reason)."""
    ts = gen.tick().isoformat()
    bodies = [
        {
            "event_id": f"bad-{n}",
            "type": "log",
            "ts": ts,
            "project": "acme",
            "body": {"id": f"data_bad_{n}", "prompt_tokens": -5},
        },
        {"event_id": f"bad-{n}", "type": "metric", "ts": ts, "project": "acme", "body": {}},
        {
            "event_id": f"bad-{n}",
            "type": "span",
            "ts": "yesterday",
            "project": "acme",
            "body": {"id": "s", "trace_id": "t"},
        },
    ]
    return orjson.dumps(bodies[n % len(bodies)])


def inflate_payloads(raw: bytes, payload_bytes: int) -> bytes:
    """``raw`` with ``payload_bytes`` more characters in each message's content and in the
    output: the heavy workload (real prompts and answers weigh kilobytes)."""
    if payload_bytes <= 0:
        return raw
    try:
        event = orjson.loads(raw)
        body = event["body"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return raw  # the generator's invalid events stay as they are
    if not isinstance(body, dict):
        return raw
    pad = "x" * payload_bytes
    for message in body.get("messages") or ():
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message["content"] += pad
    if isinstance(body.get("output"), str):
        body["output"] += pad
    return orjson.dumps(event)


def generate_events(
    count: int, *, seed: int = 7, payload_bytes: int = 0, start: datetime = BASE
) -> list[bytes]:
    """About ``count`` wire events in arrival order: traces and logs interleaved, reordered
    within a small window, ~3% re-sent (same event_id) and ~0.5% invalid.
    ``payload_bytes``: see :func:`inflate_payloads`. ``start``: the time of the first events
    (a fixed day by default; a stream mixed with live events must start near now, since the
    processors expire states by event time)."""
    gen = _Gen(random.Random(seed), sessions=max(40, count // 60), prompts=max(4, count // 2000))
    gen.clock = start
    parents: dict[str, list[str]] = {}  # project -> its latest trace roots
    n = 0
    while len(gen.events) < count:
        n += 1
        if gen.rng.random() < 0.45:
            _maxim_trace(gen, n)
        else:
            _humanloop_log(gen, n, parents)
        # Units overlap in time: rewind the clock a little so their events interleave.
        gen.clock -= timedelta(milliseconds=gen.rng.randint(0, 1500))
    gen.events.sort(key=lambda item: item[0])
    encoded = [raw for _, raw in gen.events]
    rng = gen.rng
    for i in range(len(encoded) - 1):  # reorder: local swaps
        if rng.random() < 0.15:
            j = min(len(encoded) - 1, i + rng.randint(1, 8))
            encoded[i], encoded[j] = encoded[j], encoded[i]
    for _ in range(len(encoded) * 3 // 100):  # re-sent events, later in the stream
        i = rng.randrange(len(encoded))
        encoded.insert(rng.randint(i, len(encoded)), encoded[i])
    for k in range(max(1, len(encoded) // 200)):
        encoded.insert(rng.randrange(len(encoded)), _invalid(gen, k))
    if payload_bytes > 0:
        encoded = [inflate_payloads(raw, payload_bytes) for raw in encoded]
    return encoded


@dataclass(frozen=True, slots=True)
class HeavyWorkload:
    """The heavy mix of :func:`generate_heavy_events` (issue 13's heavy workload)."""

    trace_spans: int = 500  # spans of each long agent trace (a generation and result each)
    long_traces: int = 4
    session_traces: int = 5000  # traces of the one long session
    message_bytes: int = 50 * 1024  # a long-context message, in...
    message_share: float = 0.05  # ...this share of the events that carry messages
    unsaved_share: float = 0.10  # logs sent with save=false


def generate_heavy_events(
    count: int, *, seed: int = 7, workload: HeavyWorkload = HeavyWorkload()
) -> list[bytes]:
    """About ``count`` events of a heavy production mix: ``long_traces`` agent traces of
    ``trace_spans`` spans (each with a generation and its result), one session of
    ``session_traces`` traces, and the ordinary stream of :func:`generate_events` for the
    rest, interleaved; ``message_share`` of the events with messages carry a
    ``message_bytes`` one, and ``unsaved_share`` of the logs are ``save=false``. With
    fewer events than the long units need, the units shrink to fit half of ``count``."""
    rng = random.Random(seed)
    gen = _Gen(random.Random(seed + 1), sessions=1, prompts=4)
    long_events = workload.long_traces * workload.trace_spans * 3
    session_events = workload.session_traces * 2
    scale = min(1.0, count / 2 / max(1, long_events + session_events))
    spans = max(1, int(workload.trace_spans * scale))
    for t in range(workload.long_traces):
        _long_trace(gen, t, spans)
    for t in range(max(1, int(workload.session_traces * scale))):
        start = gen.tick(1, 20)
        trace = {"id": f"hs-tr-{t}", "name": "turn", "session_id": "heavy-session",
                 "start_time": start.isoformat(), "input": f"turn {t}"}  # fmt: skip
        gen.emit("trace", "acme", trace, start)
        gen.emit("trace", "acme", {"id": f"hs-tr-{t}", "action": "end", "output": "ok"})
    units = [raw for _, raw in gen.events]
    ordinary = generate_events(max(0, count - len(units)), seed=seed)
    merged: list[bytes] = []
    i = j = 0
    while i < len(units) or j < len(ordinary):  # interleave, each stream in its order
        take_unit = j >= len(ordinary) or (i < len(units) and rng.random() < 0.5)
        if take_unit:
            merged.append(units[i])
            i += 1
        else:
            merged.append(ordinary[j])
            j += 1
    return [_heavy(raw, rng, workload) for raw in merged]


def _long_trace(gen: _Gen, t: int, spans: int) -> None:
    trace_id = f"long-tr-{t}"
    start = gen.tick()
    gen.emit("trace", "acme", {"id": trace_id, "name": "agent-run",
                               "start_time": start.isoformat()}, start)  # fmt: skip
    for s in range(spans):
        span_id = f"{trace_id}.s{s}"
        gen.emit("span", "acme", {"id": span_id, "trace_id": trace_id, "name": f"step-{s}",
                                  "start_time": gen.tick(1, 5).isoformat()})  # fmt: skip
        provider, model = _MODELS[s % 3]
        gen_id = f"{span_id}.g"
        gen.emit("generation", "acme", {
            "id": gen_id, "trace_id": trace_id, "parent_id": span_id, "provider": provider,
            "model": model, "messages": [{"role": "user", "content": f"step {s}"}],
            "start_time": gen.tick(1, 5).isoformat()})  # fmt: skip
        result = {"id": f"chatcmpl-{t}-{s}", "created": 1_772_000_000, "model": model,
                  "usage": _usage(gen.rng), "choices": [{"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": "done"}}]}  # fmt: skip
        gen.emit("generation_result", "acme", {"generation_id": gen_id, "trace_id": trace_id,
                 "result": result, "end_time": gen.tick(1, 5).isoformat()})  # fmt: skip
    gen.emit("trace", "acme", {"id": trace_id, "action": "end"})


def _heavy(raw: bytes, rng: random.Random, workload: HeavyWorkload) -> bytes:
    """One event of the heavy mix: a long message on some, save=false on some logs."""
    fat = rng.random() < workload.message_share
    unsaved = rng.random() < workload.unsaved_share
    if not fat and not unsaved:
        return raw
    try:
        item = orjson.loads(raw)
        body = item["body"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return raw  # an invalid event of the ordinary stream stays as it is
    if not isinstance(body, dict):
        return raw
    if unsaved and item.get("type") == "log":
        body["save"] = False
    messages = body.get("messages")
    if fat and isinstance(messages, list) and messages and isinstance(messages[0], dict):
        messages[0]["content"] = "x" * workload.message_bytes
    return orjson.dumps(item)


# Records of the heavy mix stay well under the record limit (2 x the 1 MB event limit).
_RECORD_BUDGET = 900 * 1024


def pack_events(
    events: Sequence[bytes], partitions: int, *, seed: int = 7, max_per_record: int = 40
) -> list[tuple[int, bytes]]:
    """Raw-topic records as the SDK packs them: events grouped by the partition of their
    routing key, a few to a record (and under ~900 KB); returned interleaved across
    partitions (the order in which a stage could read them), each as ``(partition, value)``."""
    rng = random.Random(seed)
    by_partition: dict[int, list[bytes]] = {}
    for raw in events:
        try:
            key = routing_key(validate_event(orjson.loads(raw)))
        except ValueError:
            key = b"invalid"  # the SDK would not send it; a foreign producer might
        by_partition.setdefault(partition_for(key, partitions), []).append(raw)
    queues: dict[int, list[bytes]] = {}
    for partition, items in sorted(by_partition.items()):
        records, i = [], 0
        while i < len(items):
            size = rng.randint(1, max_per_record)
            chunk = items[i : i + size]
            while len(chunk) > 1 and sum(len(raw) for raw in chunk) > _RECORD_BUDGET:
                chunk = chunk[: len(chunk) // 2]
            records.append(pack_record(chunk))
            i += len(chunk)
        queues[partition] = records
    out: list[tuple[int, bytes]] = []
    while queues:
        for partition in list(queues):
            out.append((partition, queues[partition].pop(0)))
            if not queues[partition]:
                del queues[partition]
    return out
