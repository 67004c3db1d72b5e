"""The demo's workload: a customer-support agent, as a deterministic plan of SDK calls.

:func:`build_plan` turns ``(seed, size, run id)`` into a list of :class:`Op` (one SDK call,
or one raw Kafka record, each) and the :class:`Totals` that the pipeline must end up with
in PostgreSQL. The plan is pure data: the same seed gives the same plan (only the run id
changes the ids), so the emitter (:mod:`logflume.demo.emit`) is the only part that talks
to Kafka, and the expected totals are checked by unit tests without a broker.

One conversation (a Maxim trace in a session):

- ``classify-intent`` span with one generation (``gpt-4o-mini``);
- 0 to 3 agent steps (a span each) whose generation either answers or asks for a tool
  (``finish_reason: tool_calls``), followed by a tool span (``tool:lookup_order`` ...);
- some generations fail with a 429 and are retried by a second generation, a few fail
  for good (a 500): 1 to 5 generations per trace in all;
- the reply is logged Humanloop style against the ``support/reply`` prompt with a
  ``reference_id``, its output tokens set afterwards by ``update_log(reference_id=...)``
  (as a streaming reply learns them at the end); some replies are logged twice (an app
  retry: the same datapoint), some carry a caller-given cost;
- the trace is updated with its output and ended.

Noise beside the conversations: SDK calls the contract rejects (negative tokens: the SDK
drops and counts them, they never reach Kafka), events a foreign producer writes straight
to the raw topic that the contract rejects (each becomes one dead letter, with the run's
``event_id`` prefix), and valid raw events sent twice with the same ``event_id`` (exact
duplicates that the processors drop).

Expected totals count only what is valid: costs are priced with ``genai_prices`` directly
(not with the processors' cached rate table), so a pricing or rounding bug in the pipeline
shows up as a mismatch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

import orjson
from genai_prices import Usage, calc_price

from producers.contract.keys import project_key

__all__ = ["MODELS", "Op", "OpKind", "Plan", "Totals", "build_plan", "price"]

OpKind = Literal[
    "trace",
    "span",
    "span_end",
    "generation",
    "result",
    "error",
    "log",
    "update_log",
    "trace_update",
    "trace_end",
    "invalid_log",
    "raw",
]

# (provider, model): all known to genai-prices, so every successful call has a cost.
MODELS: tuple[tuple[str, str], ...] = (
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("openai", "gpt-4.1-mini"),
)
_CLASSIFIER = ("openai", "gpt-4o-mini")
_REPLY_PROMPTS = (("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku-20241022"))
_ISSUES = (
    ("internet_down", "My internet has been down since this morning.", "check_outage"),
    ("double_charge", "I was charged twice for my May invoice.", "lookup_invoice"),
    ("password", "I can't log in, the reset email never arrives.", "reset_password"),
    ("order_status", "Where is my order? It was due on Monday.", "lookup_order"),
    ("cancel", "Please cancel my subscription at the end of the month.", "cancel_plan"),
    ("refund", "The headset I got is broken, I want a refund.", "issue_refund"),
)
_CHANNELS = ("chat", "email", "voice")
_TIERS = ("free", "pro", "enterprise")


@dataclass(frozen=True, slots=True)
class Op:
    """One step of the plan: an SDK call (``fields`` are its keyword arguments; ``target``
    the id of the trace / span / generation handle it is called on), or ``raw``: one
    Kafka record (``raw`` bytes, ``key`` for the partition) for the raw events topic."""

    kind: OpKind
    fields: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    raw: bytes = b""
    key: bytes = b""

    @property
    def events(self) -> int:
        """Events this op puts on the wire (a raw record may carry several)."""
        return 1 if self.kind != "raw" else max(1, self.raw.count(b'"event_id"'))


@dataclass(slots=True)
class Totals:
    """What PostgreSQL must hold for the run's project once the pipeline drained."""

    traces: int = 0
    generations: int = 0
    logs: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    dead_letters: int = 0  # invalid events on the raw topic (by event_id prefix)

    def as_dict(self) -> dict[str, Any]:
        return {
            "traces": self.traces,
            "generations": self.generations,
            "logs": self.logs,
            "tokens": self.tokens,
            "cost": str(self.cost),
            "dead_letters": self.dead_letters,
        }


@dataclass(slots=True)
class Plan:
    """The ops in emit order, the expected totals, and counts of the noise for the view."""

    run_id: str
    project: str
    ops: list[Op]
    expected: Totals
    rejected_by_sdk: int = 0  # invalid SDK calls (dropped by the SDK as "invalid")
    duplicates: int = 0  # re-sent events (same event_id) and re-logged datapoints
    retries: int = 0
    failed_generations: int = 0
    tool_calls: int = 0
    updates: int = 0
    trace_ids: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(op.events for op in self.ops)


@lru_cache(maxsize=64)
def _model_price(provider: str, model: str, day: str) -> Any:
    at = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
    return calc_price(
        Usage(input_tokens=1, output_tokens=1),
        model_ref=model,
        provider_id=provider,
        genai_request_timestamp=at,
    ).model_price


def price(provider: str, model: str, prompt: int, output: int, cached: int, day: str) -> Decimal:
    """The cost of one call by genai-prices (cached tokens are part of ``prompt``)."""
    usage = Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=output)
    return Decimal(_model_price(provider, model, day).calc_price(usage)["total_price"])


@dataclass(slots=True)
class _Builder:
    rng: random.Random
    run: str
    project: str
    day: str
    plan: Plan
    serial: int = 0

    def op(self, kind: OpKind, target: str | None = None, **fields: Any) -> None:
        self.plan.ops.append(Op(kind, fields, target))

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{self.run}-{prefix}{self.serial}"

    def usage(self, provider: str) -> dict[str, Any]:
        rng = self.rng
        prompt, completion = rng.randint(300, 6000), rng.randint(20, 700)
        cached = rng.randint(0, prompt // 2) if rng.random() < 0.6 else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def generation(
        self,
        parent: str,
        trace_id: str,
        name: str,
        model: tuple[str, str],
        messages: list[dict[str, Any]],
        *,
        tool: str | None = None,
        fail: str | None = None,
    ) -> None:
        """One generation, its result (or error); adds its usage to the expected totals."""
        provider, model_name = model
        gen_id = self.next_id("g")
        self.op(
            "generation",
            parent,
            id=gen_id,
            name=name,
            provider=provider,
            model=model_name,
            model_parameters={"temperature": 0.2, "max_tokens": 800},
            messages=messages,
        )
        expected = self.plan.expected
        expected.generations += 1
        if fail is not None:
            code, message = ("429", "Rate limit reached") if fail == "429" else ("500", "Upstream")
            self.op(
                "error",
                gen_id,
                trace_id=trace_id,
                message=message,
                code=code,
                type="rate_limit_error" if code == "429" else "api_error",
            )
            self.plan.failed_generations += 1
            return
        usage = self.usage(provider)
        message: dict[str, Any] = {"role": "assistant", "content": "Let me check that for you."}
        finish = "stop"
        if tool is not None:
            call = {
                "id": f"call_{self.serial}",
                "type": "function",
                "function": {"name": tool, "arguments": '{"customer_id": "c-1"}'},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        completion = {
            "id": f"chatcmpl-{gen_id}",
            "object": "chat.completion",
            "created": 1_763_800_000,
            "model": model_name,
            "usage": usage,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        self.op("result", gen_id, trace_id=trace_id, completion=completion)
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        expected.tokens += usage["total_tokens"]
        expected.cost += price(
            provider,
            model_name,
            usage["prompt_tokens"],
            usage["completion_tokens"],
            cached,
            self.day,
        )


def _conversation(b: _Builder, n: int) -> None:
    rng, plan = b.rng, b.plan
    issue, question, tool = rng.choice(_ISSUES)
    trace_id = f"{b.run}-t{n}"
    plan.trace_ids.append(trace_id)
    plan.expected.traces += 1
    customer = f"cust-{rng.randint(1, 500)}"
    b.op(
        "trace",
        None,
        id=trace_id,
        name="support-conversation",
        session_id=f"{b.run}-session-{n // 3}",
        tags={"channel": rng.choice(_CHANNELS), "tier": rng.choice(_TIERS), "issue": issue},
        metadata={"customer": customer, "agent_version": "2.3.1"},
        input=question,
    )
    messages = [
        {"role": "system", "content": "You are Ava, a helpful support agent."},
        {"role": "user", "content": question},
    ]
    budget = rng.randint(1, 5)  # generations in this trace, retries included

    classify = f"{trace_id}-classify"
    b.op("span", trace_id, id=classify, name="classify-intent", metadata={"step": 0})
    b.generation(classify, trace_id, "classify", _CLASSIFIER, messages[-1:])
    b.op("span_end", classify, trace_id=trace_id)
    budget -= 1

    step = 0
    while budget > 0:
        step += 1
        span_id = f"{trace_id}-step{step}"
        b.op("span", trace_id, id=span_id, name=f"agent-step-{step}", metadata={"step": step})
        model = rng.choice(MODELS)
        if budget >= 2 and rng.random() < 0.2:  # rate limited, then retried
            b.generation(span_id, trace_id, "respond", model, messages, fail="429")
            plan.retries += 1
            budget -= 1
            model = rng.choice(MODELS)
        if rng.random() < 0.05:
            b.generation(span_id, trace_id, "respond", model, messages, fail="500")
        else:
            wants_tool = budget > 1 and rng.random() < 0.6
            b.generation(
                span_id, trace_id, "respond", model, messages, tool=tool if wants_tool else None
            )
            if wants_tool:
                plan.tool_calls += 1
                tool_span = f"{span_id}-tool"
                b.op(
                    "span",
                    span_id,
                    id=tool_span,
                    name=f"tool:{tool}",
                    metadata={"tool": tool, "status": rng.choice(["ok", "ok", "ok", "timeout"])},
                )
                b.op("span_end", tool_span, trace_id=trace_id)
        budget -= 1
        b.op("span_end", span_id, trace_id=trace_id)

    _reply_log(b, n, trace_id, question)
    b.op(
        "trace_update",
        trace_id,
        output="Resolved: steps sent to the customer.",
        metadata={"resolved": rng.random() < 0.8},
    )
    b.op("trace_end", trace_id)


def _reply_log(b: _Builder, n: int, trace_id: str, question: str) -> None:
    """The final reply, Humanloop style, updated by reference_id; sometimes logged twice."""
    rng, plan = b.rng, b.plan
    provider, model = rng.choice(_REPLY_PROMPTS)
    reference = f"{b.run}-ticket-{n}:reply"
    prompt_tokens, output_tokens = rng.randint(200, 3000), rng.randint(30, 600)
    fields: dict[str, Any] = {
        "id": f"{b.run}-log{n}",
        "reference_id": reference,
        "path": "support/reply",
        "prompt": {
            "model": model,
            "provider": provider,
            "temperature": 0.3,
            "template": [{"role": "system", "content": "Write the reply to {{q}}."}],
        },
        "messages": [{"role": "user", "content": question}],
        "output": "Thanks for reaching out! Here is what we found...",
        "prompt_tokens": prompt_tokens,
        "trace_id": trace_id,
        "session_id": f"{b.run}-session-{n // 3}",
        "metadata": {"ticket": n},
    }
    provided = rng.random() < 0.1
    if provided:  # a caller-given cost always wins over the price table
        fields.update(prompt_cost=round(prompt_tokens * 2.5e-7, 8), output_cost=0.0004)
    b.op("log", None, **fields)
    if rng.random() < 0.08:  # the app retried the call: the same datapoint again
        b.op("log", None, **fields)
        plan.duplicates += 1
    b.op(
        "update_log",
        None,
        reference_id=reference,
        output_tokens=output_tokens,
        provider_latency=round(rng.uniform(0.3, 4.0), 3),
    )
    plan.updates += 1
    e = plan.expected
    e.logs += 1
    e.tokens += prompt_tokens + output_tokens
    if provided:
        e.cost += Decimal(str(fields["prompt_cost"])) + Decimal(str(fields["output_cost"]))
    else:
        e.cost += price(provider, model, prompt_tokens, output_tokens, 0, b.day)


def _invalid_sdk_call(b: _Builder, n: int) -> None:
    """A log the contract rejects (negative tokens): the SDK drops it and counts it."""
    b.op(
        "invalid_log",
        None,
        id=f"{b.run}-badlog{n}",
        path="support/reply",
        prompt_tokens=-5,
        output_tokens=10,
    )
    b.plan.rejected_by_sdk += 1


def _raw_invalid(b: _Builder, n: int, ts: str) -> None:
    """A record from a foreign producer that the contract rejects: one dead letter."""
    event_id = f"{b.run}-bad-{n}"
    bodies = [
        {"type": "log", "body": {"id": f"{b.run}-x{n}", "prompt_tokens": "many"}},
        {"type": "metric", "body": {"value": 1}},
        {"type": "span", "body": {"id": f"{b.run}-x{n}", "trace_id": "t"}, "ts": "yesterday"},
    ]
    event = {"event_id": event_id, "ts": ts, "project": b.project, **bodies[n % len(bodies)]}
    b.plan.ops.append(Op("raw", raw=orjson.dumps([event]), key=event_id.encode()))
    b.plan.expected.dead_letters += 1


def _raw_duplicate(b: _Builder, n: int, ts: str, trace_id: str) -> None:
    """A valid log from an importer that re-sent its batch: the same event_id twice."""
    rng = b.rng
    prompt_tokens, output_tokens = rng.randint(100, 900), rng.randint(10, 200)
    reference = f"{b.run}-import-{n}"
    event = {
        "event_id": f"{b.run}-imp-{n}",
        "type": "log",
        "ts": ts,
        "project": b.project,
        "body": {
            "id": f"{b.run}-implog{n}",
            "reference_id": reference,
            "path": "support/csat",
            "prompt": {"model": "gpt-4o-mini", "provider": "openai"},
            "output": "csat survey sent",
            "prompt_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "trace_id": trace_id,
        },
    }
    record = orjson.dumps([event])
    key = project_key(b.project, reference).encode()  # the SDK's routing key
    b.plan.ops.append(Op("raw", raw=record, key=key))
    b.plan.ops.append(Op("raw", raw=record, key=key))
    b.plan.duplicates += 1
    e = b.plan.expected
    e.logs += 1
    e.tokens += prompt_tokens + output_tokens
    e.cost += price("openai", "gpt-4o-mini", prompt_tokens, output_tokens, 0, b.day)


def build_plan(
    *, events: int, seed: int, run_id: str, project: str, now: datetime | None = None
) -> Plan:
    """About ``events`` events of customer-support traffic, in emit order, and what they
    must add up to. ``now`` fixes the price-table date and the raw events' time."""
    now = now or datetime.now(UTC)
    day, ts = now.date().isoformat(), now.isoformat()
    plan = Plan(run_id, project, [], Totals())
    b = _Builder(random.Random(seed), run_id, project, day, plan)
    planned, n = 0, 0
    while planned < events:
        n += 1
        before = len(plan.ops)
        _conversation(b, n)
        if b.rng.random() < 0.02:
            _invalid_sdk_call(b, n)
        if b.rng.random() < 0.02:
            _raw_invalid(b, n, ts)
        if b.rng.random() < 0.03:
            _raw_duplicate(b, n, ts, plan.trace_ids[-1])
        planned += sum(op.events for op in plan.ops[before:])
    if plan.expected.dead_letters == 0:  # every run shows at least one of each kind of noise
        _raw_invalid(b, 0, ts)
    if plan.rejected_by_sdk == 0:
        _invalid_sdk_call(b, 0)
    return plan
