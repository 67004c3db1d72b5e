"""Plays a :class:`~logflume.demo.workload.Plan` at a target rate: SDK calls through the
fire-and-forget :class:`~producers.sdk.Client`, raw records through an aiokafka producer
(the "foreign producer" of the plan's invalid and re-sent events).

Pacing: every tick (20 ms) the emitter catches up to ``rate * elapsed`` events, so the
average rate holds even when a tick is late; SDK calls never block, so the only thing that
can hold the rate back is this process's CPU (the view then shows a lower events/s).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from producers.contract import partition_for
from producers.sdk import Client, Generation, Span, Trace

from .workload import Op, Plan

__all__ = ["EmitProgress", "Emitter"]

_TICK_S = 0.02


@dataclass(slots=True)
class EmitProgress:
    """How far the emitter got (read by the live view)."""

    events: int = 0
    ops: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def done(self) -> bool:
        return self.finished > 0


class Emitter:
    """Applies ops to an SDK client and a raw producer; keeps the trace / span /
    generation handles by id so that later ops can address them."""

    def __init__(
        self, client: Client, producer: AIOKafkaProducer, topic: str, partitions: int
    ) -> None:
        self.client = client
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        self.progress = EmitProgress()
        self._handles: dict[str, Trace | Span | Generation] = {}
        self._raw_sends: list[asyncio.Future[Any]] = []

    def apply(self, op: Op) -> None:
        """One SDK call (raw ops are sent by :meth:`run`)."""
        f = dict(op.fields)  # the SDK may stamp the dict it is given
        kind, handles = op.kind, self._handles
        if kind == "trace":
            handles[f["id"]] = self.client.trace(**f)
        elif kind == "span":
            parent = handles[op.target or ""]
            assert isinstance(parent, Trace | Span)
            handles[f["id"]] = parent.span(**f)
        elif kind == "generation":
            parent = handles[op.target or ""]
            assert isinstance(parent, Trace | Span)
            handles[f["id"]] = parent.generation(**f)
        elif kind == "result":
            gen = handles.pop(op.target or "")
            assert isinstance(gen, Generation)
            gen.result(f["completion"])
        elif kind == "error":
            gen = handles.pop(op.target or "")
            assert isinstance(gen, Generation)
            gen.error(message=f["message"], code=f["code"], type=f["type"])
        elif kind == "span_end":
            span = handles.pop(op.target or "")
            assert isinstance(span, Span)
            span.end()
        elif kind == "trace_update":
            trace = handles[op.target or ""]
            assert isinstance(trace, Trace)
            trace.update(**f)
        elif kind == "trace_end":
            trace = handles.pop(op.target or "")
            assert isinstance(trace, Trace)
            trace.end()
        elif kind in ("log", "invalid_log"):
            self.client.log(**f)
        elif kind == "update_log":
            self.client.update_log(**f)
        else:
            raise ValueError(f"not an SDK op: {kind}")

    async def _send_raw(self, op: Op) -> None:
        partition = partition_for(op.key, self.partitions)
        fut = await self.producer.send(self.topic, op.raw, partition=partition)
        self._raw_sends.append(fut)

    async def run(self, plan: Plan, rate: float, stop: asyncio.Event) -> EmitProgress:
        """Emit the whole plan at ``rate`` events/s (until ``stop``); then wait for the
        raw records' acknowledgements (the SDK is flushed by the caller)."""
        progress = self.progress
        progress.started = time.monotonic()
        ops, i = plan.ops, 0
        while i < len(ops) and not stop.is_set():
            allowed = int(rate * (time.monotonic() - progress.started)) - progress.events
            while allowed > 0 and i < len(ops):
                op = ops[i]
                if op.kind == "raw":
                    await self._send_raw(op)
                else:
                    self.apply(op)
                i += 1
                progress.ops = i
                progress.events += op.events
                allowed -= op.events
            await asyncio.sleep(_TICK_S)
        if self._raw_sends:
            await asyncio.gather(*self._raw_sends)
        progress.finished = time.monotonic()
        return progress
