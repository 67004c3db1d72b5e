"""Stage 2, trace assembly and rollups: canonical entities in, trace rollups out, plus the
contributions that the groups step (sessions, prompt versions) aggregates. Pure.

Both steps re-emit the rollup of every group a record touches, changed or not, so a worker
that crashed between its state write and its output re-emits on redelivery; the rollup's
``version`` makes that idempotent downstream.
"""

from __future__ import annotations

from typing import Any, cast

from producers.contract.keys import from_key_part, key_part, member_key, project_key
from producers.contract.stage_records import Contribution, MemberSummary

from .assembly import TOKEN_FIELDS, add_detached_member, add_member, entity_summary, group_rollup
from .outcome import DeadLetter, Lookup, Origin, Outcome, Output, load_record

__all__ = [
    "ENTITY_KEYS",
    "process_entities",
    "process_entities_record",
    "process_groups",
    "process_groups_record",
    "rollup_summary",
]

ENTITY_KEYS = {"kind", "key", "project", "version", "trace_root"}
# Groups whose members are table values of their own, each keyed by
# producers.contract.keys.member_key (processors.assembly.add_detached_member): a prompt
# version holds every log made with it, a trace every span, generation and log of a long
# agent run (one of ~6,000 generations outgrew Kafka's record limit when the trace's state
# held them all), a session every trace of a conversation. A trace retracted from a session
# (its members named a smaller session id) is subtracted from the session's totals exactly,
# but the session's time span only widens here: the sink recomputes it from the traces it
# stores (sinks.writer).
DETACHED_GROUPS = ("prompt_version:", "trace:", "session:")
_CONTRIBUTION_KEYS = set(Contribution.__required_keys__)


def _select(
    items: list[Any], wanted: set[str], origin: Origin, value: bytes, outcome: Outcome
) -> list[dict[str, Any]]:
    """The items that are objects with the ``wanted`` keys; any other makes a dead letter."""
    valid = [item for item in items if isinstance(item, dict) and wanted <= item.keys()]
    if len(valid) != len(items):
        reason = f"record holds values without the keys {sorted(wanted)}"
        outcome.dead_letters.append(DeadLetter(origin, -1, reason, value))
    return valid


def rollup_summary(rollup: dict[str, Any]) -> dict[str, Any]:
    """A trace rollup as a member of its session (retracted once every member of the
    trace is deleted)."""
    if not rollup["counts"]:
        return {"kind": "trace", "id": rollup["id"], "version": rollup["version"],
                "retracted": True, "cost": None}  # fmt: skip
    return {
        "kind": "trace",
        "id": rollup["id"],
        "version": rollup["version"],
        **{name: rollup[name] for name in TOKEN_FIELDS},
        "cost": rollup["cost"],
        "priced": rollup["priced"],
        "error": rollup["error_count"] > 0,
        "error_count": rollup["error_count"],
        "unpriced_count": rollup["unpriced_count"],
        "start": rollup["start_time"],
        "end": rollup["end_time"],
    }


class _Groups:
    """The groups one record touches: their states (read once, written once)."""

    def __init__(self, lookup: Lookup, outcome: Outcome) -> None:
        self.lookup, self.outcome = lookup, outcome
        self.states: dict[str, dict[str, Any] | None] = {}
        self.members: dict[str, dict[str, Any] | None] = {}  # detached members (by key)

    def add(self, key: str, member: str, summary: dict[str, Any], last_ts: float) -> None:
        state = self.states[key] if key in self.states else self.lookup(key)
        if key.startswith(DETACHED_GROUPS):
            if state is not None and "members" in state:
                state = self._detach_members(key, state)
            self._add_detached(key, state, member, summary, last_ts)
            return
        track_sessions = key.startswith("trace:")
        updated = add_member(state, member, summary, last_ts, track_sessions=track_sessions)
        if updated is not None:
            self.outcome.writes[key] = updated
            state = updated
        self.states[key] = state

    def _add_detached(
        self,
        key: str,
        state: dict[str, Any] | None,
        member: str,
        summary: dict[str, Any],
        last_ts: float,
    ) -> None:
        key_of_member = member_key(key, member)
        old = (
            self.members[key_of_member]
            if key_of_member in self.members
            else self.lookup(key_of_member)
        )
        track_sessions = key.startswith("trace:")  # to retract the trace from other sessions
        added = add_detached_member(state, old, summary, last_ts, track_sessions=track_sessions)
        if added is None:
            self.states[key] = state
            self.members[key_of_member] = old
            return
        self.states[key], self.members[key_of_member] = added
        self.outcome.writes[key], self.outcome.writes[key_of_member] = added

    def _detach_members(self, key: str, state: dict[str, Any]) -> dict[str, Any]:
        """A group state written before its kind's members were detached (it holds them
        all): write each member under its own key, once, so nothing is counted twice."""
        for member, contribution in state["members"].items():
            key_of_member = member_key(key, member)
            detached = {**contribution, "last_ts": state["last_ts"]}
            self.members[key_of_member] = self.outcome.writes[key_of_member] = detached
        slim = {"totals": state["totals"], "last_ts": state["last_ts"]}
        self.outcome.writes[key] = slim
        return slim

    def touched(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(kind, project, id, state) of every touched group that has a state."""
        found = []
        for key, state in self.states.items():
            if state is not None:
                kind, _, rest = key.partition(":")
                project, _, group_id = rest.partition("/")
                found.append((kind, project, from_key_part(group_id), state))
        return found


def _contribution(
    group: str, project: str, group_id: str, member: str, summary: dict[str, Any], last_ts: float
) -> Output:
    """A member's summary for the groups step, routed by the group's key."""
    value: Contribution = {
        "group": group,
        "project": project,
        "id": group_id,
        "member": member,
        "summary": cast(MemberSummary, summary),
        "last_ts": last_ts,
    }
    return Output(project_key(project, group_id).encode(), cast(dict[str, Any], value))


def process_entities_record(value: bytes, origin: Origin, lookup: Lookup) -> Outcome:
    outcome = Outcome()
    entities = _select(load_record(value, origin, outcome), ENTITY_KEYS, origin, value, outcome)
    process_entities(entities, lookup, outcome)
    return outcome


def process_entities(entities: list[dict[str, Any]], lookup: Lookup, outcome: Outcome) -> None:
    """Stage 2 over decoded canonical entities (each with the keys of ``ENTITY_KEYS``).

    The record form above decodes first; replay calls this on entities that never left the
    process, coalesced to the newest version of each (what a group keeps in the end is
    only the newest contribution of each member, so that gives the same final groups)."""
    groups = _Groups(lookup, outcome)
    for entity in entities:
        if entity["kind"] == "feedback" or entity["trace_root"] is None:
            continue  # feedback adds nothing to trace totals; a session's node has no trace
        project, last_ts = entity["project"], entity.get("last_ts", 0.0)
        summary = entity_summary(entity)
        trace_key = f"trace:{project_key(project, entity['trace_root'])}"
        groups.add(trace_key, entity["key"], summary, last_ts)
        # A prompt version's totals are its prompt logs' (not a Flow's, Tool's, Evaluator's).
        prompt_log = entity["kind"] == "log" and entity.get("log_kind", "prompt") == "prompt"
        if prompt_log and entity.get("version_id"):
            outcome.regroup.append(
                _contribution(
                    "prompt_version", project, entity["version_id"], entity["key"], summary, last_ts
                )
            )
    for kind, project, trace_id, state in groups.touched():
        rollup = group_rollup(kind, project, trace_id, state)
        outcome.outputs.append(Output(project_key(project, trace_id).encode(), rollup))
        if rollup.get("session_id"):
            member, last_ts = f"trace:{key_part(trace_id)}", state["last_ts"]
            summary = rollup_summary(rollup)
            outcome.regroup.append(
                _contribution("session", project, rollup["session_id"], member, summary, last_ts)
            )
            retracted = {
                "kind": "trace",
                "id": trace_id,
                "version": rollup["version"],
                "retracted": True,
            }
            for session in rollup.get("other_sessions", ()):
                outcome.regroup.append(
                    _contribution("session", project, session, member, retracted, last_ts)
                )


def process_groups_record(value: bytes, origin: Origin, lookup: Lookup) -> Outcome:
    """Sessions and prompt versions: aggregate the contributions of stage 2."""
    outcome = Outcome()
    items = _select(load_record(value, origin, outcome), _CONTRIBUTION_KEYS, origin, value, outcome)
    process_groups(items, lookup, outcome)
    return outcome


def process_groups(items: list[dict[str, Any]], lookup: Lookup, outcome: Outcome) -> None:
    """The groups step over decoded contributions (the values of ``Outcome.regroup``)."""
    groups = _Groups(lookup, outcome)
    for item in items:
        key = f"{item['group']}:{project_key(item['project'], item['id'])}"
        groups.add(key, item["member"], item["summary"], item["last_ts"])
    for kind, project, group_id, state in groups.touched():
        rollup = group_rollup(kind, project, group_id, state)
        outcome.outputs.append(Output(project_key(project, group_id).encode(), rollup))
