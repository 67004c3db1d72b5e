"""Trace assembly and rollups: pure reducers over canonical entities (stage 2's rules).

A group (a trace, a session, a prompt version) holds one *member summary* per member,
replaced only by a summary of a higher ``version``. Totals are recomputed from the members
in key order, so they equal the brute-force sum over the final entities whatever order,
duplication or redelivery brought them, and a child that arrives before its parent still
counts. A group's ``version`` is the sum of its members' versions: it grows with every
change, which is what the sink's guard needs.

Group state (a table value): ``{"members": {member_key: summary}, "last_ts": float}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = [
    "TOKEN_FIELDS",
    "add_member",
    "entity_summary",
    "group_rollup",
    "trace_status",
]

TOKEN_FIELDS = ("prompt_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "tokens")


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


def add_member(
    group: dict[str, Any] | None, member_key: str, summary: dict[str, Any], last_ts: float
) -> dict[str, Any] | None:
    """The group with ``summary`` in it; None when it already holds this version or newer."""
    members = group["members"] if group else {}
    current = members.get(member_key)
    if current is not None and current["version"] >= summary["version"]:
        return None
    return {
        "members": {**members, member_key: summary},
        "last_ts": max(group["last_ts"] if group else 0.0, last_ts),
    }


def trace_status(members: list[dict[str, Any]]) -> str:
    """error if any node failed; with a Maxim trace node, completed once it has ended and
    running before; Humanloop logs are records of finished calls, so a trace of logs only
    is completed."""
    if any(m["error"] for m in members):
        return "error"
    roots = [m for m in members if m["kind"] == "trace"]
    if roots:
        return "completed" if roots[0]["end"] else "running"
    return "completed" if all(m["kind"] == "log" for m in members) else "running"


def _unpriced(member: dict[str, Any]) -> int:
    if "unpriced_count" in member:  # a member that is itself a rollup
        return int(member["unpriced_count"])
    return int(member.get("cost") is None and member["tokens"] > 0)


def group_rollup(kind: str, project: str, group_id: str, group: dict[str, Any]) -> dict[str, Any]:
    """Totals of a group, computed from its members in key order (deterministic floats)."""
    members = [group["members"][key] for key in sorted(group["members"])]
    costs = [m["cost"] for m in members if m.get("cost") is not None]
    starts = [m["start"] for m in members if m.get("start")]
    ends = [m["end"] for m in members if m.get("end")]
    counts: dict[str, int] = {}
    for member in members:
        counts[member["kind"]] = counts.get(member["kind"], 0) + member.get("count", 1)
    rollup: dict[str, Any] = {
        "kind": kind,
        "project": project,
        "id": group_id,
        "version": sum(m["version"] for m in members),
        "counts": dict(sorted(counts.items())),
        "error_count": sum(m.get("error_count", int(m["error"])) for m in members),
        **{name: sum(m[name] for m in members) for name in TOKEN_FIELDS},
        "cost": sum(costs) if costs else None,
        "unpriced_count": sum(_unpriced(m) for m in members),
        "start_time": min(starts) if starts else None,
        "end_time": max(ends) if ends else None,
    }
    if starts and ends:
        span = datetime.fromisoformat(max(ends)) - datetime.fromisoformat(min(starts))
        rollup["duration"] = span.total_seconds()
    if kind == "trace":
        rollup["status"] = trace_status(members)
        sessions = sorted({m["session_id"] for m in members if m.get("session_id")})
        rollup["session_id"] = sessions[0] if sessions else None
        roots = [m for m in members if m["kind"] == "trace"]
        rollup["name"] = roots[0]["name"] if roots else None
    return rollup
