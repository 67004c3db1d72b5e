"""Order-independent merge of one entity's events: the pure reducer of stage 1.

An entity's state is a plain dict (it is a Faust table value, JSON on the changelog)::

    {"kind": "log", "project": "p", "seen": [event ids], "last_ts": epoch seconds,
     "mut": {field: [value, ts_us, event_id]},    # latest (ts, event_id) wins; payload
                                                  # fields: [None, ts_us, event_id]
     "imm": {field: [value, ts_us, event_id]},    # earliest (ts, event_id) wins
     "meta": {key: [value, ts_us, event_id]},     # metadata (and tags), key by key
     "created": bool, "save": bool, "deleted": bool (only once deleted)}

Every rule is a max, a min or a logical AND over the events seen, so any order, any
duplication and any grouping of the same events gives the same state (a state-based CRDT);
hypothesis tests check it. ``save`` is the AND of the creates' flags: once an entity is
``save=false`` its payload fields are dropped from the state and never enter it again, and
an event with ``save=false`` never brings payload in.

A ``delete`` event makes the state a tombstone: only what places the entity in its groups
(immutable fields, session and parent) is kept, so that its output retracts it from them,
and every later event of the entity is dropped. Deletion is final (it is the one rule that
depends on order: an event after it is ignored).

Payload fields (``producers.contract.PAYLOAD_FIELDS``) keep only their version in the state:
a winning value is handed to the caller (``carried``) to travel in the entity's output,
and the sink stores it (see ``producers.contract.outputs``). So an entity's state is a few
hundred bytes whatever its messages and outputs weigh. The exception: a log's updates that
arrive before its create keep their payload values (``[value, ts_us, event_id, 1]``) until
the create arrives, since no output leaves before it.
"""

from __future__ import annotations

from typing import Any

from producers.contract import PAYLOAD_FIELDS

__all__ = [
    "PAYLOAD_FIELDS",
    "Change",
    "apply_change",
    "field_values",
    "new_state",
]


class Change:
    """What one event asserts about its entity, stamped with the event's version. A plain
    class for a native ``__init__`` (see :class:`processors.outcome.Output`)."""

    __slots__ = (
        "event_id",
        "immutable",
        "is_create",
        "is_delete",
        "kind",
        "metadata",
        "mutable",
        "project",
        "save",
        "ts_us",
    )

    def __init__(
        self,
        kind: str,
        project: str,
        event_id: str,
        ts_us: int,
        *,
        is_create: bool = False,
        save: bool = True,
        is_delete: bool = False,
    ) -> None:
        self.kind = kind
        self.project = project
        self.event_id = event_id
        self.ts_us = ts_us
        self.mutable: dict[str, Any] = {}
        self.immutable: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}  # keys already namespaced
        self.is_create = is_create
        self.save = save
        self.is_delete = is_delete

    def __repr__(self) -> str:
        return f"Change(kind={self.kind!r}, event_id={self.event_id!r}, ts_us={self.ts_us})"


# What a deleted entity keeps of its mutable fields: its place in its groups.
_MEMBERSHIP = frozenset({"session_id", "session_reference_id", "parent_id", "parent_reference_id"})


_PENDING = 1  # 4th element of a payload entry whose value waits for its log's create


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


def apply_change(
    state: dict[str, Any] | None, change: Change, carried: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The state after ``change``; None when the event was already seen (a duplicate).

    ``carried`` receives the payload values that won (the state keeps their versions
    only); a save=false outcome empties it.

    Returns a new dict: table values are reassigned, never mutated in place (a value
    mutated in place is lost on recovery).
    """
    if state is None:
        state = new_state(change.kind, change.project)
    elif change.event_id in state["seen"] or state.get("deleted"):
        return None
    if change.is_delete:
        if carried is not None:
            carried.clear()
        return _tombstone(state, change)
    ts_us, event_id = change.ts_us, change.event_id
    save = state["save"] and (change.save or not change.is_create)
    mut = dict(state["mut"])
    imm = dict(state["imm"])
    meta = dict(state["meta"])

    payload_allowed = save and change.save
    created = state["created"] or change.is_create
    # A log is emitted only once its create has arrived: until then, payload values wait
    # in the state (marked pending) and go out with the create's output.
    hold = change.kind == "log" and not created
    for name, value in change.mutable.items():
        payload = name in PAYLOAD_FIELDS
        if payload and not payload_allowed:
            continue
        current = mut.get(name)
        if current is None or _newer(current, ts_us, event_id):
            if payload and hold:
                mut[name] = [value, ts_us, event_id, _PENDING]
            elif payload:
                mut[name] = [None, ts_us, event_id]
                if carried is not None:
                    carried[name] = value
            else:
                mut[name] = [value, ts_us, event_id]
    if change.kind == "log" and change.is_create and not state["created"]:  # created now
        for name in [n for n, entry in mut.items() if len(entry) > 3]:
            value, entry_ts, entry_id, _ = mut[name]
            mut[name] = [None, entry_ts, entry_id]
            if carried is not None:
                carried[name] = value
    for name, value in change.immutable.items():
        current = imm.get(name)
        if current is None or not _newer(current, ts_us, event_id):
            imm[name] = [value, ts_us, event_id]
    for key, value in change.metadata.items():
        current = meta.get(key)
        if current is None or _newer(current, ts_us, event_id):
            meta[key] = [value, ts_us, event_id]
    if not save:
        for name in [name for name in PAYLOAD_FIELDS if name in mut]:
            del mut[name]
        if carried is not None:
            carried.clear()

    return {
        "kind": state["kind"],
        "project": state["project"],
        "seen": [*state["seen"], event_id],
        "last_ts": max(state["last_ts"], ts_us / 1_000_000),
        "mut": mut,
        "imm": imm,
        "meta": meta,
        "created": created,
        "save": save,
    }


def _tombstone(state: dict[str, Any], change: Change) -> dict[str, Any]:
    """The state of a deleted entity: its identity and group membership, nothing else."""
    return {
        **state,
        "seen": [*state["seen"], change.event_id],
        "last_ts": max(state["last_ts"], change.ts_us / 1_000_000),
        "mut": {name: entry for name, entry in state["mut"].items() if name in _MEMBERSHIP},
        "meta": {},
        "deleted": True,
    }


def field_values(state: dict[str, Any]) -> dict[str, Any]:
    """The merged fields: immutable ones, mutable ones, and metadata/tags rebuilt per key.
    Payload fields are not among them (the state holds their versions only)."""
    values: dict[str, Any] = {name: entry[0] for name, entry in state["imm"].items()}
    values.update(
        (name, entry[0]) for name, entry in state["mut"].items() if name not in PAYLOAD_FIELDS
    )
    groups: dict[str, dict[str, Any]] = {}
    for key, entry in sorted(state["meta"].items()):
        group, _, name = key.partition(".")
        groups.setdefault(group, {})[name] = entry[0]
    values.update(groups)
    return values
