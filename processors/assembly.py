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

Group state (a table value)::

    {"members": {member_key: contribution}, "totals": {...}, "last_ts": float}

Work per added member is constant in Python; the members dict is still copied (at C speed)
and the whole value goes to the changelog, so a group's value grows with its members
(~150 bytes each): fine for traces and sessions; see the README for very large prompt
versions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = [
    "COST_UNIT",
    "TOKEN_FIELDS",
    "add_member",
    "entity_summary",
    "group_rollup",
]

TOKEN_FIELDS = ("prompt_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "tokens")
COST_UNIT = 10_000_000_000  # cost totals are kept in 1e-10 dollars: exact integer sums
# Integer totals that are the sum of the members' contributions.
_SUMMED = (*TOKEN_FIELDS, "cost_units", "priced", "errors", "unpriced", "version")


def _utc(value: str | None) -> str | None:
    """ISO time in UTC, so that min / max over strings are min / max over instants."""
    return datetime.fromisoformat(value).astimezone(UTC).isoformat() if value else None


def _parent(entity: dict[str, Any]) -> str | None:
    if entity["kind"] == "log":
        return entity.get("trace_parent_log_id") or entity.get("parent_id")
    return entity.get("parent_id")


def entity_summary(entity: dict[str, Any]) -> dict[str, Any]:
    """What a trace needs of one canonical entity: identity, tree link, usage, cost, time."""
    kind = entity["kind"]
    error = entity.get("error")
    return {
        "kind": kind,
        "id": entity.get("id"),
        "parent": _parent(entity),
        "version": entity["version"],
        **{name: entity.get(name) or 0 for name in TOKEN_FIELDS},
        "cost": entity.get("cost"),
        "error": bool(error) or entity.get("status") == "error",
        "start": _utc(entity.get("start_time") or entity.get("created_at")),
        "end": _utc(entity.get("end_time")),
        "session_id": entity.get("session_id") or entity.get("session_reference_id"),
        "version_id": entity.get("version_id"),
        "name": entity.get("name"),
    }


def _contribution(summary: dict[str, Any]) -> dict[str, Any]:
    """The compact, integer form of a member summary that the totals are sums of."""
    cost = summary.get("cost")
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
        "start": summary.get("start"),
        "end": summary.get("end"),
        "session_id": summary.get("session_id"),
        "name": summary.get("name"),
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


def add_member(
    group: dict[str, Any] | None, member_key: str, summary: dict[str, Any], last_ts: float
) -> dict[str, Any] | None:
    """The group with ``summary`` in it; None when it already holds this version or newer."""
    members = group["members"] if group else {}
    old = members.get(member_key)
    if old is not None and old["version"] >= summary["version"]:
        return None
    new = _contribution(summary)
    totals = dict(group["totals"]) if group else _empty_totals()
    for name in _SUMMED:
        totals[name] += new[name] - (old[name] if old else 0)
    was_present = old["present"] if old else 0
    if new["present"] != was_present:
        counts = dict(totals["counts"])
        counts[new["kind"]] = counts.get(new["kind"], 0) + new["present"] - was_present
        totals["counts"] = {kind: n for kind, n in counts.items() if n}
    members = {**members, member_key: new}
    if was_present and not new["present"]:  # a retraction (rare): recompute the time span
        present = [m for m in members.values() if m["present"]]
        totals["start"] = min((m["start"] for m in present if m["start"]), default=None)
        totals["end"] = max((m["end"] for m in present if m["end"]), default=None)
    else:
        totals["start"] = _min(totals["start"], new["start"])
        totals["end"] = _max(totals["end"], new["end"])
    if new["session_id"]:
        totals["sessions"] = _min(totals["sessions"], new["session_id"])
        if new["session_id"] not in totals["seen_sessions"]:
            totals["seen_sessions"] = sorted({*totals["seen_sessions"], new["session_id"]})
    if new["kind"] == "trace":  # the Maxim trace node itself: its end means completed
        totals["root"] = {"end": new["end"], "name": new["name"]}
    return {
        "members": members,
        "totals": totals,
        "last_ts": max(group["last_ts"] if group else 0.0, last_ts),
    }


def _trace_status(totals: dict[str, Any]) -> str:
    """error if any node failed; with a Maxim trace node, completed once it has ended and
    running before; Humanloop logs are records of finished calls, so a trace of logs only
    is completed."""
    if totals["errors"]:
        return "error"
    if totals["root"] is not None:
        return "completed" if totals["root"]["end"] else "running"
    return "completed" if set(totals["counts"]) <= {"log"} else "running"


def group_rollup(kind: str, project: str, group_id: str, group: dict[str, Any]) -> dict[str, Any]:
    """The rollup of a group, read off its running totals (constant time)."""
    totals = group["totals"]
    start, end = totals["start"], totals["end"]
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
    }
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
