"""Order-independent merge of one entity's events: the pure reducer of stage 1.

An entity's state is a plain dict (it is a Faust table value, JSON on the changelog)::

    {"kind": "log", "project": "p", "seen": [event ids], "last_ts": epoch seconds,
     "mut": {field: [value, ts_us, event_id]},    # latest (ts, event_id) wins
     "imm": {field: [value, ts_us, event_id]},    # earliest (ts, event_id) wins
     "meta": {key: [value, ts_us, event_id]},     # metadata (and tags), key by key
     "created": bool, "save": bool}

Every rule is a max, a min or a logical AND over the events seen, so any order, any
duplication and any grouping of the same events gives the same state (a state-based CRDT);
hypothesis tests check it. ``save`` is the AND of the creates' flags: once an entity is
``save=false`` its payload fields are dropped from the state and never enter it again, and
an event with ``save=false`` never brings payload in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PAYLOAD_FIELDS",
    "Change",
    "apply_change",
    "field_values",
    "new_state",
]

# What `save=false` keeps out of state, output and Postgres (DESIGN section 2).
PAYLOAD_FIELDS = frozenset(
    {
        "messages",
        "inputs",
        "output",
        "output_message",
        "raw_output",
        "provider_request",
        "provider_response",
        "stdout",
        "tools",
        "input",
        "result",
    }
)


@dataclass(slots=True)
class Change:
    """What one event asserts about its entity, stamped with the event's version."""

    kind: str
    project: str
    event_id: str
    ts_us: int
    mutable: dict[str, Any] = field(default_factory=dict)
    immutable: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # keys already namespaced
    is_create: bool = False
    save: bool = True


def new_state(kind: str, project: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "project": project,
        "seen": [],
        "last_ts": 0.0,
        "mut": {},
        "imm": {},
        "meta": {},
        "created": False,
        "save": True,
    }


def _newer(a: list[Any], ts_us: int, event_id: str) -> bool:
    return (ts_us, event_id) > (a[1], a[2])


def apply_change(state: dict[str, Any] | None, change: Change) -> dict[str, Any] | None:
    """The state after ``change``; None when the event was already seen (a duplicate).

    Returns a new dict: table values are reassigned, never mutated in place (a value
    mutated in place is lost on recovery).
    """
    if state is None:
        state = new_state(change.kind, change.project)
    elif change.event_id in state["seen"]:
        return None
    ts_us, event_id = change.ts_us, change.event_id
    save = state["save"] and (change.save or not change.is_create)
    mut = dict(state["mut"])
    imm = dict(state["imm"])
    meta = dict(state["meta"])

    payload_allowed = save and change.save
    for name, value in change.mutable.items():
        if name in PAYLOAD_FIELDS and not payload_allowed:
            continue
        current = mut.get(name)
        if current is None or _newer(current, ts_us, event_id):
            mut[name] = [value, ts_us, event_id]
    for name, value in change.immutable.items():
        current = imm.get(name)
        if current is None or not _newer(current, ts_us, event_id):
            imm[name] = [value, ts_us, event_id]
    for key, value in change.metadata.items():
        current = meta.get(key)
        if current is None or _newer(current, ts_us, event_id):
            meta[key] = [value, ts_us, event_id]
    if not save:
        for name in PAYLOAD_FIELDS & mut.keys():
            del mut[name]

    return {
        "kind": state["kind"],
        "project": state["project"],
        "seen": [*state["seen"], event_id],
        "last_ts": max(state["last_ts"], ts_us / 1_000_000),
        "mut": mut,
        "imm": imm,
        "meta": meta,
        "created": state["created"] or change.is_create,
        "save": save,
    }


def field_values(state: dict[str, Any]) -> dict[str, Any]:
    """The merged fields: immutable ones, mutable ones, and metadata/tags rebuilt per key."""
    values: dict[str, Any] = {name: entry[0] for name, entry in state["imm"].items()}
    values.update((name, entry[0]) for name, entry in state["mut"].items())
    groups: dict[str, dict[str, Any]] = {}
    for key, entry in sorted(state["meta"].items()):
        group, _, name = key.partition(".")
        groups.setdefault(group, {})[name] = entry[0]
    values.update(groups)
    return values
