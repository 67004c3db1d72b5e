"""Events to changes, and merged states to canonical entities (stage 1's domain rules).

Entity kinds and their table keys (``kind:project/identity``, the identity written as a key
part by ``producers.contract.keys``; every event of an entity
routes to one partition, see ``producers.contract.records``):

- ``log``: ``log`` and ``log_update`` events, identity = reference_id, else the log id;
- ``feedback``: one per feedback id (routed with the log it rates);
- ``trace``, ``span``: Maxim create / update / end events;
- ``generation``: ``generation`` (create / update / end), ``generation_result`` and
  ``generation_error`` events;
- ``tool_call``, ``retrieval``, ``event``, ``error``, ``attachment``, ``session``: ``node``
  events, the entity's kind is the node's (merged like spans).

A log is emitted once its create has arrived (updates before it are kept in the state and
applied then: a partial log has no id of its own to be stored under); the other kinds are
emitted at once, marked ``partial`` until their create arrives.

An output carries the payload values that the events merged into its version brought
(``carried``, see ``producers.contract.outputs``); the state keeps their versions only.
What the totals need of a payload is taken out at merge time: a generation's result gives
its ``usage`` and model, kept in the state as fields of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from producers.contract import CARRIED, Event, entity_identity
from producers.contract.ids import file_id_for_path, file_version_id
from producers.contract.keys import project_key

from .merge import Change, field_values
from .pricing import price_call
from .text import scrub_nul

__all__ = [
    "PlainEvent",
    "canonical_entity",
    "canonical_time",
    "entity_key",
    "plain_event",
    "to_change",
    "wire_event",
]

# Fields a log keeps from its first create (architecture section 2: immutable).
_LOG_IMMUTABLE = frozenset(
    {
        "id",
        "reference_id",
        "path",
        "prompt_id",
        "prompt",
        "version_id",
        "log_kind",
        "file",
        "trace_id",
        "trace_parent_log_id",
        "created_at",
    }
)
_NODE_IMMUTABLE = frozenset({"id", "trace_id", "parent_id"})
_NODE_KIND_IMMUTABLE = frozenset({"id", "trace_id", "parent_id", "session_id"})
_FEEDBACK_IMMUTABLE = frozenset({"id", "log_id", "reference_id", "trace_id", "session_id"})
# Merged key by key (an attachment's: its upload's size and its line's name, either first).
_MAPS = ("metadata", "tags", "metrics", "attachment")
# A generation's messages appended after creation, merged key by key under the event's
# version (so any order gives the same list: see _generation_entity).
_ADDED = "add_messages"
# The body fields typed as datetimes in the contract (all top level).
TIME_FIELDS = ("start_time", "end_time", "created_at")


class PlainEvent:
    """A valid event as stage 1 merges it: plain data, no model. Not changed once made.

    ``body`` holds the fields the event carries as they came on the wire (explicit nulls
    included), but for its datetimes, re-written as the contract's JSON dump writes them
    (:func:`json_time`); ``identity`` is its entity's (``producers.contract
    .entity_identity``), ``ts`` its emit time. A plain class for a native ``__init__``
    (see :class:`processors.outcome.Output`)."""

    __slots__ = ("body", "event_id", "identity", "project", "ts", "type")

    def __init__(
        self,
        type: str,
        event_id: str,
        project: str,
        ts: datetime,
        identity: str,
        body: dict[str, Any],
    ) -> None:
        self.type = type
        self.event_id = event_id
        self.project = project
        self.ts = ts
        self.identity = identity
        self.body = body

    def __repr__(self) -> str:
        return f"PlainEvent(type={self.type!r}, event_id={self.event_id!r}, ...)"


def json_time(value: datetime) -> str:
    """A datetime as the contract's JSON dump writes it (UTC as ``Z``)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def plain_event(event: Event, raw_body: dict[str, Any] | None = None) -> PlainEvent:
    """A validated model as stage 1's plain event. ``raw_body``: the body as decoded from
    the wire, when the caller has it (the contract transforms no value but datetimes, so a
    copy of it with those re-written equals the model's JSON dump at a fraction of a
    ``model_dump``'s cost)."""
    if raw_body is None:
        body = event.body.model_dump(mode="json", exclude_unset=True)
    else:
        body = _json_times(dict(raw_body), lambda name: getattr(event.body, name))
    return PlainEvent(
        event.type, event.event_id, event.project, event.ts, entity_identity(event), body
    )


def wire_event(item: dict[str, Any], etype: str, identity: str, ts: datetime) -> PlainEvent:
    """An event as decoded from the wire, checked by the contract's mirror (which found its
    type, identity and emit time), as stage 1's plain event; its body is re-used."""
    body = item["body"]
    for name in TIME_FIELDS:
        text = body.get(name)
        if text is not None:
            body[name] = canonical_time(text)
    return PlainEvent(etype, item["event_id"], item["project"], ts, identity, body)


def canonical_time(text: str) -> str:
    """``json_time(datetime.fromisoformat(text))`` for a time the contract's mirror accepted
    (its pattern: ``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)``, and a valid date). The forms
    of the SDK and of ``isoformat()`` in UTC with microseconds are answered by slicing
    (~0.2 µs against ~2-2.7 µs to parse and format, compiled)."""
    size = len(text)
    if size == 27 and text[26] == "Z" and text[19] == "." and text[20:26] != "000000":
        return text
    if size == 32 and text[19] == "." and text.endswith("+00:00") and text[20:26] != "000000":
        return text[:26] + "Z"
    return json_time(datetime.fromisoformat(text))


def _json_times(body: dict[str, Any], time_of: Callable[[str], datetime]) -> dict[str, Any]:
    """``body`` with its datetimes (``time_of`` each field) in the contract's JSON form."""
    for name in TIME_FIELDS:
        if body.get(name) is not None:
            body[name] = json_time(time_of(name))
    return body


def entity_key(kind: str, project: str, identity: str) -> str:
    """The table key of an entity's state: ``kind:project/identity`` (the identity encoded,
    see :mod:`producers.contract.keys`)."""
    return f"{kind}:{project_key(project, identity)}"


def _change(
    kind: str, event: PlainEvent, ts_us: int, carried: dict[str, Any], immutable: frozenset[str]
) -> Change:
    change = Change(kind=kind, project=event.project, event_id=event.event_id, ts_us=ts_us)
    mutable, fixed, metadata = change.mutable, change.immutable, change.metadata
    for name, value in carried.items():
        if name in _MAPS:
            if isinstance(value, dict):
                metadata.update((f"{name}.{k}", v) for k, v in value.items())
        elif name in immutable:
            fixed[name] = value
        else:
            mutable[name] = value
    return change


def to_change(event: PlainEvent, *, scrub: bool = False) -> tuple[str, Change]:
    """The table key of the event's entity and what the event asserts about it.

    ``scrub``: the event may hold NUL characters; apply the rule of ``processors.text``."""
    carried = scrub_nul(event.body) if scrub else dict(event.body)
    etype = event.type
    ts_us = int(event.ts.timestamp() * 1_000_000)
    kind = etype
    if etype == "log":
        save = carried.pop("save", True)
        change = _change("log", event, ts_us, carried, _LOG_IMMUTABLE)
        change.is_create, change.save = True, bool(save)
    elif etype == "log_update":
        kind = "log"
        target = {k: carried.pop(k) for k in ("id", "reference_id") if k in carried}
        change = _change("log", event, ts_us, carried, frozenset())
        change.immutable.update((f"target_{k}", v) for k, v in target.items())
    elif etype == "feedback":
        change = _change("feedback", event, ts_us, carried, _FEEDBACK_IMMUTABLE)
        change.is_create = True
        return f"feedback:{project_key(event.project, event.body['id'])}", change
    elif etype in ("trace", "span", "node"):
        kind = event.body["kind"] if etype == "node" else etype
        action = carried.pop("action", "create")
        if action == "end" and "end_time" not in carried:
            carried["end_time"] = event.ts.isoformat()
        immutable = _NODE_KIND_IMMUTABLE if etype == "node" else _NODE_IMMUTABLE
        change = _change(kind, event, ts_us, carried, immutable)
        change.immutable.pop("kind", None)
        change.mutable.pop("kind", None)
        change.is_create = action == "create"
    elif etype == "generation":
        action = carried.pop("action", "create")
        added = carried.pop(_ADDED, None)
        if action == "end" and "end_time" not in carried:
            carried["end_time"] = event.ts.isoformat()
        cost = carried.pop("cost", None)
        if isinstance(cost, dict):
            carried["caller_cost"] = cost
        change = _change("generation", event, ts_us, carried, _NODE_IMMUTABLE)
        if added:
            change.metadata[f"{_ADDED}.{ts_us:020d}-{event.event_id}"] = added
        change.is_create = action == "create"
    elif etype in ("generation_result", "generation_error"):
        kind = "generation"
        generation_id = carried.pop("generation_id")
        trace_id = carried.pop("trace_id")
        carried["status"] = "success" if etype == "generation_result" else "error"
        result = carried.get("result")
        if isinstance(result, dict):  # what the totals need of the (payload) result
            carried["usage"] = result.get("usage")
            carried["result_model"] = result.get("model")
        change = _change("generation", event, ts_us, carried, _NODE_IMMUTABLE)
        change.immutable.update(id=generation_id, trace_id=trace_id)
    elif etype == "delete":
        kind = event.body["kind"]
        change = Change(kind, event.project, event.event_id, ts_us, is_delete=True)
    else:
        raise TypeError(f"not an event type: {etype!r}")
    return entity_key(kind, event.project, event.identity), change


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _file_version(values: dict[str, Any]) -> None:
    """The version id from the File's details (prompt or kernel) when none was given."""
    kind = values["log_kind"]
    details = values.get("prompt") if kind == "prompt" else values.get("file")
    if details is not None and not values.get("version_id"):
        values["version_id"] = file_version_id(kind, details)


def _log_entity(values: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    values.pop("target_id", None)
    values.pop("target_reference_id", None)
    kind = values["log_kind"] = values.get("log_kind") or "prompt"
    prompt = values.get("prompt")
    _file_version(values)
    if values.get("path") and not values.get("prompt_id"):
        values["prompt_id"] = file_id_for_path(kind, values["path"])
    prompt_tokens = values.get("prompt_tokens") or 0
    output_tokens = values.get("output_tokens") or 0
    values["tokens"] = prompt_tokens + output_tokens
    if values.get("prompt_cost") is not None or values.get("output_cost") is not None:
        values["cost_source"] = "provided"  # a caller-given cost always wins
    elif kind != "prompt" and not values["tokens"]:
        values["cost_source"] = None  # a flow, tool or evaluator call with nothing to price
    else:
        model = prompt.get("model") if prompt else None
        provider = prompt.get("provider") if prompt else None
        created = values.get("created_at") or values.get("start_time")
        at = _ts(created) or _last_event_time(state)
        price = price_call(
            provider,
            model,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            cached_tokens=values.get("cached_tokens") or 0,
            at=at,
        )
        if price is None:
            values["cost_source"] = "unknown"
        else:
            values.update(prompt_cost=price.prompt, output_cost=price.output)
            values["cost_source"] = "computed"
    if values["cost_source"] in ("unknown", None):
        values["cost"] = None
    else:
        values["cost"] = (values.get("prompt_cost") or 0.0) + (values.get("output_cost") or 0.0)
    values["save"] = state["save"]
    values["trace_root"] = values.get("trace_id") or values["id"]
    return values


def _last_event_time(state: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(state["last_ts"], UTC)


def _generation_entity(values: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    added = values.pop(_ADDED, None)
    if added:  # in the order of the events that appended them
        values["added_messages"] = [m for key in sorted(added) for m in added[key]]
    usage = values.pop("usage", None) or {}
    result_model = values.pop("result_model", None)
    if not usage and result_model is None:  # a state written before results were split
        legacy = state["mut"].get("result", [None])[0]
        if isinstance(legacy, dict):
            usage, result_model = legacy.get("usage") or {}, legacy.get("model")
    prompt_tokens = usage.get("prompt_tokens") or 0
    output_tokens = usage.get("completion_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    values.update(
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        tokens=usage.get("total_tokens") or prompt_tokens + output_tokens,
    )
    model = values.get("model") or result_model
    caller_cost = values.get("caller_cost")
    if isinstance(caller_cost, dict) and caller_cost.get("total") is not None:
        values.update(cost=caller_cost["total"], cost_source="provided")  # the caller's wins
        return values
    if not usage:
        values.update(cost=None, cost_source=None)
        return values
    price = price_call(
        values.get("provider"),
        model,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached,
        at=_ts(values.get("start_time")) or _last_event_time(state),
    )
    values["cost"] = price.total if price else None
    values["cost_source"] = "computed" if price else "unknown"
    return values


def canonical_entity(
    key: str, state: dict[str, Any], carried: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The entity as downstream sees it, or None while it cannot be emitted yet.
    ``carried``: the payload values its latest events brought (:func:`apply_change`)."""
    kind = state["kind"]
    if kind == "log" and not state["created"]:
        return None  # updates before the create wait in the state
    if state.get("deleted"):
        return _deleted_entity(key, state)
    values = field_values(state)
    if carried:
        values.update(carried)
    values[CARRIED] = sorted(carried) if carried else []
    if kind == "log":
        values = _log_entity(values, state)
    elif kind == "generation":
        values = _generation_entity(values, state)
    elif kind == "trace":
        values["trace_root"] = values.get("id")
    values.setdefault("trace_root", values.get("trace_id"))
    values.update(
        kind=kind,
        key=key,
        project=state["project"],
        version=len(state["seen"]),
        partial=not state["created"],
        last_ts=state["last_ts"],
    )
    return values


def _deleted_entity(key: str, state: dict[str, Any]) -> dict[str, Any] | None:
    """A deleted entity's last output: ``deleted``, no usage or cost, and what places it in
    its trace, session and prompt version, so that stage 2 retracts it from them and the
    sink removes its rows. None when it was never placed anywhere."""
    values = field_values(state)
    kind = state["kind"]
    if kind == "log":
        values["log_kind"] = values.get("log_kind") or "prompt"
        _file_version(values)
        values["trace_root"] = values.get("trace_id") or values.get("id")
        values["save"] = state["save"]
    elif kind == "trace":
        values["trace_root"] = values.get("id")
    values.setdefault("trace_root", values.get("trace_id"))
    placed = values["trace_root"] is not None or values.get("session_id") is not None
    if not placed or values.get("id") is None:  # (a Maxim session's nodes: by session)
        return None
    values.update(
        kind=kind,
        key=key,
        project=state["project"],
        version=len(state["seen"]),
        partial=False,
        last_ts=state["last_ts"],
        cost=None,
        deleted=True,
    )
    values[CARRIED] = []
    return values
