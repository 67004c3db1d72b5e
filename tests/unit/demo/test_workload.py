"""The demo's workload plan: deterministic by seed, valid where it should be, and its
expected totals equal a brute-force recount of its own ops."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from genai_prices import Usage, calc_price

from logflume.demo.workload import MODELS, Op, Plan, build_plan
from producers.contract import ContractError, parse_event
from producers.sdk.encoding import EventEncoder

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def plan(seed: int = 3, events: int = 4000, run_id: str = "rtest") -> Plan:
    return build_plan(events=events, seed=seed, run_id=run_id, project="demo-test", now=NOW)


def test_same_seed_same_plan_and_other_seed_differs() -> None:
    a, b, c = plan(seed=3), plan(seed=3), plan(seed=4)
    assert a.ops == b.ops
    assert a.expected == b.expected
    assert a.ops != c.ops
    assert a.expected != c.expected


def test_run_id_only_renames() -> None:
    a, b = plan(run_id="rone"), plan(run_id="rtwo")
    assert len(a.ops) == len(b.ops)
    assert a.expected.tokens == b.expected.tokens
    assert a.expected.cost == b.expected.cost
    assert all(t.startswith("rone-") for t in a.trace_ids)


@pytest.mark.parametrize("events", [1, 50, 4000])
def test_size_is_about_what_was_asked(events: int) -> None:
    p = plan(events=events)
    assert events <= p.events < events + 80  # at most one conversation and its noise more
    assert p.expected.dead_letters >= 1 and p.rejected_by_sdk >= 1


def _price(provider: str, model: str, prompt: int, output: int, cached: int) -> Decimal:
    usage = Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=output)
    found = calc_price(usage, model_ref=model, provider_id=provider, genai_request_timestamp=NOW)
    return Decimal(found.total_price)


def test_expected_totals_equal_a_recount_of_the_ops() -> None:
    p = plan(events=6000)
    gens: dict[str, tuple[str, str]] = {}
    traces: set[str] = set()
    logs: dict[str, dict] = {}  # reference_id -> merged fields
    tokens, cost, dead = 0, Decimal(0), 0
    for op in p.ops:
        f = op.fields
        if op.kind == "trace":
            traces.add(f["id"])
        elif op.kind == "generation":
            gens[f["id"]] = (f["provider"], f["model"])
        elif op.kind == "result":
            usage = f["completion"]["usage"]
            provider, model = gens[op.target]
            tokens += usage["prompt_tokens"] + usage["completion_tokens"]
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            cost += _price(provider, model, usage["prompt_tokens"], usage["completion_tokens"],
                           cached)  # fmt: skip
        elif op.kind == "log":
            logs.setdefault(f["reference_id"], {}).update(f)
        elif op.kind == "update_log":
            logs[f["reference_id"]].update(f)
        elif op.kind == "raw":
            for event in orjson.loads(op.raw):
                try:
                    parse_event(orjson.dumps(event))
                except ContractError:
                    dead += 1
                    continue
                body = event["body"]
                logs.setdefault(body["reference_id"], {}).update(body)
    for log in logs.values():
        tokens += log["prompt_tokens"] + log["output_tokens"]
        if log.get("prompt_cost") is not None:
            cost += Decimal(str(log["prompt_cost"])) + Decimal(str(log["output_cost"]))
        else:
            prompt = log["prompt"]
            cost += _price(prompt["provider"], prompt["model"], log["prompt_tokens"],
                           log["output_tokens"], 0)  # fmt: skip
    e = p.expected
    assert e.traces == len(traces) == len(p.trace_ids)
    assert e.generations == len(gens)
    assert e.logs == len(logs)
    assert e.tokens == tokens
    assert abs(e.cost - cost) < Decimal("1e-9")
    assert e.dead_letters == dead


def test_every_trace_has_one_to_five_generations_of_known_models() -> None:
    p = plan()
    per_trace: Counter[str] = Counter()
    parents = {f["id"]: t for t in p.trace_ids for f in [{"id": t}]}
    for op in p.ops:
        if op.kind == "span":
            parents[op.fields["id"]] = parents[op.target]
        elif op.kind == "generation":
            per_trace[parents[op.target]] += 1
            model = (op.fields["provider"], op.fields["model"])
            assert model in MODELS
    assert set(per_trace) == set(p.trace_ids)
    assert set(per_trace.values()) <= {1, 2, 3, 4, 5}
    assert len(set(per_trace.values())) >= 4  # the sizes vary


def test_the_noise_is_there() -> None:
    p = plan(events=8000)
    assert p.retries > 0 and p.failed_generations > p.retries
    assert p.tool_calls > 0 and p.duplicates > 0 and p.updates == p.expected.traces
    kinds = Counter(op.kind for op in p.ops)
    assert kinds["error"] == p.failed_generations
    raw = [op for op in p.ops if op.kind == "raw"]
    resent = Counter(op.raw for op in raw)
    assert any(n == 2 for n in resent.values())  # exact duplicates: the same bytes twice


def _sdk_call_body(op: Op) -> tuple[str, dict]:
    """The event type and body the SDK would encode for an op (ids as the handles add)."""
    f = dict(op.fields)
    if op.kind in ("log", "invalid_log"):
        return "log", f
    if op.kind == "update_log":
        return "log_update", f
    if op.kind == "trace":
        return "trace", f
    if op.kind == "span":
        return "span", {**f, "trace_id": "t"}
    if op.kind == "generation":
        return "generation", {**f, "trace_id": "t"}
    if op.kind == "result":
        return "generation_result", {"generation_id": op.target, "trace_id": "t",
                                     "result": f["completion"]}  # fmt: skip
    if op.kind == "error":
        error = {k: f[k] for k in ("message", "code", "type")}
        return "generation_error", {"generation_id": op.target, "trace_id": "t", "error": error}
    if op.kind == "span_end":
        return "span", {"id": op.target, "action": "end", "trace_id": "t"}
    return "trace", {"id": op.target, "action": "update" if op.kind == "trace_update" else "end",
                     **f}  # fmt: skip


def test_sdk_ops_are_valid_except_the_planned_invalid_ones() -> None:
    encoder = EventEncoder("demo-test", max_event_bytes=1024 * 1024)
    rejected = 0
    for op in plan().ops:
        if op.kind == "raw":
            continue
        etype, body = _sdk_call_body(op)
        try:
            encoder.encode(etype, NOW.timestamp(), body, ())
        except ContractError as exc:
            assert op.kind == "invalid_log", (op.kind, str(exc))
            rejected += 1
    assert rejected == plan().rejected_by_sdk
