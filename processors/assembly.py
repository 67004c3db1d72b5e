"""Trace assembly and rollups: pure reducers over canonical entities (stage 2's rules).

A group (a trace, a session, a prompt version) holds one compact *contribution* per
member, replaced only by one of a higher ``version``, and running totals kept up to date
incrementally (the old contribution subtracted, the new one added). Totals are integers —
tokens, counts, and cost in units of 1e-10 dollars (the precision of the database's
``numeric(20, 10)``) — so they are exact: whatever order, duplication or redelivery brought
the members, the totals equal the brute-force sum over the final entities, and a child
that arrives before its parent still counts. Start and end are the min and max over every
contribution seen. A group's ``version`` is the sum of its members' versions: it grows
with every change, which is what the sink's guard needs.

Group state (a table value) of a session::

    {"members": {member_key: contribution}, "totals": {...}, "last_ts": float}

Work per added member is constant in Python, but the members dict is copied (at C speed)
and the whole value goes to the changelog, so the value grows with the members (~150 bytes
each). So every group the stages keep (a trace: every node of an agent run, tens of
thousands in long ones; a session: every trace of a conversation; a prompt version: every
log made with it, millions) has its members *detached* (:func:`add_detached_member`): each
is a table value of its own and the group holds only ``{"totals": {...}, "last_ts":
float}``. :func:`add_member` (members held in the group) stays for the tests that compare
both and for states written before.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "COST_UNIT",
    "LATENCY_KINDS",
    "TOKEN_FIELDS",
    "add_detached_member",
    "add_member",
    "entity_summary",
    "group_rollup",
    "utc_text",
]

TOKEN_FIELDS = ("prompt_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "tokens")
# Kinds whose own latency (end - start) a group sums per kind (``latencies``): a trace's
# spans, LLM calls, tool calls and retrievals.
LATENCY_KINDS = frozenset({"span", "generation", "tool_call", "retrieval", "log"})
COST_UNIT = 10_000_000_000  # cost totals are kept in 1e-10 dollars: exact integer sums
# Integer totals that are the sum of the members' contributions.
_SUMMED = (
    *TOKEN_FIELDS, "cost_units", "priced", "errors", "unpriced", "incomplete", "version"
)  # fmt: skip


def _utc(value: str | None) -> str | None:
    """ISO time in UTC, so that min / max over strings are min / max over instants."""
    return utc_text(value) if value else None


def utc_text(value: str) -> str:
    """``value`` (a time of a canonical entity) in UTC as ``isoformat()`` writes it. Stage 1
    writes UTC times with microseconds as ``...ffffffZ``: answered by slicing (~0.2 µs
    against ~2 µs to parse and format)."""
    if len(value) == 27 and value[26] == "Z" and value[19] == "." and value[20:26] != "000000":
        return value[:26] + "+00:00"
    return _parsed_utc_text(value)


# An entity's times come back with every version of it (and a span's start with each of its
# updates): parsed once. Pure functions of a string, so a cache is exact.
@functools.lru_cache(maxsize=1 << 16)
def _parsed_utc_text(value: str) -> str:
    return datetime.fromisoformat(value).astimezone(UTC).isoformat()


def _parent(entity: dict[str, Any]) -> str | None:
    if entity["kind"] == "log":
        return entity.get("trace_parent_log_id") or entity.get("parent_id")
    return entity.get("parent_id")


def entity_summary(entity: dict[str, Any]) -> dict[str, Any]:
    """What a trace needs of one canonical entity: identity, tree link, usage, cost, time.
    A deleted entity's summary is retracted: it no longer counts, nor adds anything."""
    kind = entity["kind"]
    error = entity.get("error")
    if entity.get("deleted"):
        return {"kind": kind, "id": entity.get("id"), "version": entity["version"],
                "retracted": True, "cost": None}  # fmt: skip
    return {
        "kind": kind,
        "id": entity.get("id"),
        "parent": _parent(entity),
        "version": entity["version"],
        **{name: entity.get(name) or 0 for name in TOKEN_FIELDS},
        "cost": entity.get("cost"),
        "error": bool(error) or entity.get("status") == "error",
        "incomplete": int(entity.get("log_status") == "incomplete"),
        "start": _utc(entity.get("start_time") or entity.get("created_at")),
        "end": _utc(entity.get("end_time")),
        "session_id": entity.get("session_id") or entity.get("session_reference_id"),
        "version_id": entity.get("version_id"),
        "name": entity.get("name"),
    }


def _latency_us(start: str | None, end: str | None) -> int:
    """A member's own latency in microseconds (0 without both ends)."""
    if not start or not end:
        return 0
    span = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return max(0, span // timedelta(microseconds=1))


def _contribution(summary: dict[str, Any]) -> dict[str, Any]:
    """The compact, integer form of a member summary that the totals are sums of."""
    cost = summary.get("cost")
    timed = summary["kind"] in LATENCY_KINDS and not summary.get("retracted")
    tokens = {name: int(summary.get(name) or 0) for name in TOKEN_FIELDS}
    unpriced = summary.get("unpriced_count")  # a member that is itself a rollup
    if unpriced is None:
        unpriced = int(cost is None and tokens["tokens"] > 0)
    return {
        "kind": summary["kind"],
        "version": int(summary["version"]),
        "present": 0 if summary.get("retracted") else 1,
        **tokens,
        "cost_units": round(cost * COST_UNIT) if cost is not None else 0,
        "priced": summary.get("priced", int(cost is not None)),
        "errors": int(summary.get("error_count", int(bool(summary.get("error"))))),
        "unpriced": int(unpriced),
        "incomplete": int(summary.get("incomplete") or 0),
        "start": summary.get("start"),
        "end": summary.get("end"),
        "session_id": summary.get("session_id"),
        "name": summary.get("name"),
        "latency_us": _latency_us(summary.get("start"), summary.get("end")) if timed else 0,
    }


def _empty_totals() -> dict[str, Any]:
    return {
        **dict.fromkeys(_SUMMED, 0),
        "counts": {},
        "seen_sessions": [],
        "start": None,
        "end": None,
        "sessions": None,
        "root": None,
    }


def _min(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b)


def _newer(old: dict[str, Any] | None, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The contribution of ``summary``; None when ``old`` is already this version or newer."""
    if old is not None and old["version"] >= summary["version"]:
        return None
    return _contribution(summary)


def _updated_totals(
    group: dict[str, Any] | None,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    span: tuple[str | None, str | None] | None,
    track_sessions: bool,
) -> dict[str, Any]:
    """The group's totals with ``old`` replaced by ``new``; ``span`` is the recomputed
    (start, end) when a retraction may have shrunk it."""
    totals = dict(group["totals"]) if group else _empty_totals()
    for name in _SUMMED:  # .get: a total or contribution written before "incomplete"
        totals[name] = totals.get(name, 0) + new[name] - (old.get(name, 0) if old else 0)
    was_present = old["present"] if old else 0
    if new["present"] != was_present:
        counts = dict(totals["counts"])
        counts[new["kind"]] = counts.get(new["kind"], 0) + new["present"] - was_present
        totals["counts"] = {kind: n for kind, n in counts.items() if n}
    latency = new.get("latency_us", 0) - (old.get("latency_us", 0) if old else 0)
    if latency:  # .get: totals and contributions written before latencies were kept
        latencies = dict(totals.get("latency_us") or {})
        latencies[new["kind"]] = latencies.get(new["kind"], 0) + latency
        totals["latency_us"] = {kind: n for kind, n in latencies.items() if n}
    if span is not None:
        totals["start"], totals["end"] = span
    else:
        totals["start"] = _min(totals["start"], new["start"])
        totals["end"] = _max(totals["end"], new["end"])
    if new["session_id"]:
        totals["sessions"] = _min(totals["sessions"], new["session_id"])
        if track_sessions and new["session_id"] not in totals["seen_sessions"]:
            totals["seen_sessions"] = sorted({*totals["seen_sessions"], new["session_id"]})
    if new["kind"] == "trace":  # the Maxim trace node itself: its end means completed
        totals["root"] = {"end": new["end"], "name": new["name"]} if new["present"] else None
    return totals


def add_member(
    group: dict[str, Any] | None,
    member_key: str,
    summary: dict[str, Any],
    last_ts: float,
    *,
    track_sessions: bool = True,
) -> dict[str, Any] | None:
    """The group with ``summary`` in it; None when it already holds this version or newer.

    ``track_sessions``: keep every session id the members name (a trace needs them to find
    the sessions it must be retracted from); off for sessions, where it would only grow."""
    members = group["members"] if group else {}
    old = members.get(member_key)
    new = _newer(old, summary)
    if new is None:
        return None
    members = {**members, member_key: new}
    span = None
    if old is not None and old["present"] and not new["present"]:  # a retraction (rare)
        present = [m for m in members.values() if m["present"]]
        span = (
            min((m["start"] for m in present if m["start"]), default=None),
            max((m["end"] for m in present if m["end"]), default=None),
        )
    return {
        "members": members,
        "totals": _updated_totals(group, old, new, span, track_sessions),
        "last_ts": max(group["last_ts"] if group else 0.0, last_ts),
    }


def add_detached_member(
    group: dict[str, Any] | None,
    old: dict[str, Any] | None,
    summary: dict[str, Any],
    last_ts: float,
    *,
    track_sessions: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """For groups too large to hold their members (prompt versions: every log of a version;
    traces: every node of a long agent run): the member's contribution ``old`` is kept under
    a key of its own, and the group only holds its totals, so each change writes two small
    values whatever the group's size.

    Returns ``(group, member)``, or None when ``old`` is already this version or newer.
    A retraction (a session's trace that moved to another session) subtracts the member's
    totals exactly; the span, which the members that would say how far it shrinks are not
    at hand to recompute, is left to the sink (a session's rollup carries none).
    A member's value expires like every state, ``state_ttl_s`` after its own last event.
    """
    new = _newer(old, summary)
    if new is None:
        return None
    updated = {
        "totals": _updated_totals(group, old, new, None, track_sessions=track_sessions),
        "last_ts": max(group["last_ts"] if group else 0.0, last_ts),
    }
    return updated, {**new, "last_ts": last_ts}


def _trace_status(totals: dict[str, Any]) -> str:
    """error if any node failed; running while a log in it is ``incomplete`` (a Humanloop
    Flow log opened as incomplete and not yet marked complete); with a Maxim trace node,
    completed once it has ended and running before; Humanloop logs are otherwise records of
    finished calls, so a trace of logs only is completed."""
    if totals["errors"]:
        return "error"
    if totals.get("incomplete"):
        return "running"
    if totals["root"] is not None:
        return "completed" if totals["root"]["end"] else "running"
    return "completed" if set(totals["counts"]) <= {"log"} else "running"


def group_rollup(kind: str, project: str, group_id: str, group: dict[str, Any]) -> dict[str, Any]:
    """The rollup of a group, read off its running totals (constant time)."""
    totals = group["totals"]
    start, end = totals["start"], totals["end"]
    if kind == "session":
        # Its span is what its traces span now, and a trace that moved to another session
        # (a retraction) would leave a running span too wide: the sink computes it from the
        # traces it stores (sinks.sql.SESSION_SPANS).
        start = end = None
    rollup: dict[str, Any] = {
        "kind": kind,
        "project": project,
        "id": group_id,
        "version": totals["version"],
        "counts": dict(sorted(totals["counts"].items())),
        "error_count": totals["errors"],
        **{name: totals[name] for name in TOKEN_FIELDS},
        "cost": totals["cost_units"] / COST_UNIT if totals["priced"] else None,
        "priced": totals["priced"],
        "unpriced_count": totals["unpriced"],
        "start_time": start,
        "end_time": end,
        "latencies": {kind: us / 1_000_000 for kind, us in sorted(
            (totals.get("latency_us") or {}).items())},
    }  # fmt: skip
    if start and end:
        span = datetime.fromisoformat(end) - datetime.fromisoformat(start)
        rollup["duration"] = span.total_seconds()
    if kind == "trace":
        rollup["status"] = _trace_status(totals)
        rollup["session_id"] = totals["sessions"]
        # Members disagreed on the session: the trace belongs to the smallest id, and is
        # retracted from the others (whatever order the members came in).
        rollup["other_sessions"] = [s for s in totals["seen_sessions"] if s != totals["sessions"]]
        rollup["name"] = totals["root"]["name"] if totals["root"] else None
    return rollup
