"""Stand-in reducers for the plumbing tests: pass every event through, count per key.

Stage 1 input: a raw record, a JSON array of ``{event_id, project, ts, body: {id, trace_id}}``;
an event with ``"poison": true`` makes the reducer raise (the whole record is dead-lettered).
Stage 2 input: a record of stage 1's outputs; each also goes to the groups step, whose
group is the trace's last character. All keep ``last_ts`` in every state, as the real
reducers do, and emit one output per event (rollups tagged ``kind`` trace or group) so
tests can compare sets of event ids. Each output's identity (what the stages' output windows
coalesce on, ``processors.topology``) is its event id, so the windows keep every one.
"""

from __future__ import annotations

from typing import Any

import orjson

from processors.agents import Reducers
from processors.outcome import Lookup, Origin, Outcome, Output
from producers.contract import unpack_record


def _count(outcome: Outcome, lookup: Lookup, key: str, event_id: str, ts: float) -> int:
    """Count the event in ``key``'s state (one write per key per record); the new count."""
    state = outcome.writes.get(key) or lookup(key) or {"count": 0, "last_ts": ts}
    count = state["count"] + 1
    outcome.writes[key] = {
        **state,
        "count": count,
        "last_ts": max(state["last_ts"], ts),
        "last_event": event_id,
    }
    return count


def _identity(kind: str, event_id: str) -> dict[str, Any]:
    """A rollup's identity fields, unique per event (and the event id itself)."""
    return {"kind": kind, "project": "p", "id": event_id, "version": 1, "event_id": event_id}


def events_standin(value: bytes, origin: Origin, lookup: Lookup, **_: Any) -> Outcome:
    outcome = Outcome()
    for raw in unpack_record(value):  # ValueError when the record is not JSON
        event = orjson.loads(raw)
        if event.get("poison"):
            raise ValueError("poisoned event")
        entity = f"{event['project']}/{event['body']['id']}"
        trace = f"{event['project']}/{event['body']['trace_id']}"
        count = _count(outcome, lookup, entity, event["event_id"], float(event["ts"]))
        outcome.outputs.append(
            Output(
                key=trace.encode(),
                value={
                    "key": event["event_id"],  # identity, version: one per event
                    "version": 1,
                    "event_id": event["event_id"],
                    "entity": entity,
                    "trace": trace,
                    "ts": event["ts"],
                    "count": count,
                    "from": [origin.topic, origin.partition, origin.offset],
                },
            )
        )
    return outcome


def entities_standin(value: bytes, origin: Origin, lookup: Lookup) -> Outcome:
    outcome = Outcome()
    for item in orjson.loads(value):
        trace, event_id, ts = item["trace"], item["event_id"], item["ts"]
        _count(outcome, lookup, trace, event_id, float(ts))
        outcome.outputs.append(
            Output(trace.encode(), {**_identity("trace", event_id), "trace": trace})
        )
        group = f"p/g{trace[-1]}"
        contribution = {"group": group, "project": "p", "id": group, "member": event_id}
        outcome.regroup.append(
            Output(
                group.encode(),
                {**contribution, "summary": {"version": 1}, "event_id": event_id, "ts": ts},
            )
        )
    return outcome


def groups_standin(value: bytes, origin: Origin, lookup: Lookup) -> Outcome:
    outcome = Outcome()
    for item in orjson.loads(value):
        group, event_id = item["group"], item["event_id"]
        _count(outcome, lookup, group, event_id, float(item["ts"]))
        outcome.outputs.append(
            Output(group.encode(), {**_identity("group", event_id), "group": group})
        )
    return outcome


STANDINS = Reducers(entities=events_standin, traces=entities_standin, groups=groups_standin)
