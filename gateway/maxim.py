"""Maxim commit lines to wire-contract events (pure; the route resolves and publishes).

The ``maxim-py`` Logger pushes newline-separated commit lines to ``POST /api/sdk/v3/log``::

    trace{id=tr1,action=create,data={"name": "checkout", "sessionId": "s1", ...}}
    trace{id=tr1,action=add-span,data={"id": "sp1", "name": "plan", ...}}
    span{id=sp1,action=add-generation,data={"id": "g1", "model": "gpt-4o", ...}}
    generation{id=g1,action=result,data={"result": {chat.completion}}}
    span{id=sp1,action=end,data={"endTimestamp": "..."}}

Lines name a node by its own id only, while every contract event below a trace carries the
trace's id: the translator keeps ``node -> trace`` for the nodes created in the batch and
is given the ones created earlier (:mod:`gateway.nodes`); a line whose node is not known
yet comes back in ``held`` (:mod:`gateway.held`).

Every entity and action maxim-py 3.14 sends (:data:`MAXIM_LINES`) becomes a contract event
(:data:`MODELLED`): traces, spans and generations (created, updated, ended; a generation's
result or error, a caller's cost, messages appended later), ``node`` events for tool calls,
retrievals, events, errors, attachments (their metadata and URL or key, never bytes) and a
session's own node, and ``feedback`` on a trace or a session. A key of a line that no body
field takes joins the body's metadata. Nothing a client sends is dropped: a line that
becomes no contract event is kept verbatim as a dead letter (:func:`not_modelled`,
:func:`refused`; published by :mod:`gateway.deadletters`, stored in ``dead_letters``) with a
reason naming its entity and action: ``evaluate`` lines (evaluators run on Maxim's
platform), any other entity or action, and every line that is malformed or that the
contract refuses. A line's node id and a child's ``data.id`` are checked against the
contract's id rule before anything else (:mod:`gateway.ids`), so an id PostgreSQL cannot
hold is refused with its line and never looked up, held or recorded; a line whose data is
nested deeper than JSON encoding goes is refused alone too, the rest of its batch goes on.

Each line becomes an event whose ``event_id`` hashes the project and the line, so a batch
the SDK re-sends after a failure is deduplicated downstream; ``ts`` is the batch's arrival
plus the line's position in microseconds, so later lines win over earlier ones. A dead
letter's origin is the topic ``gateway.maxim`` at an offset taken from the same hash, so a
re-sent line is stored once (``dead_letters`` is unique on its origin).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson

from producers.contract import ContractError, FieldError
from producers.contract.deadletters import DeadLetter, Origin

from .deadletters import Kept
from .ids import id_problem, valid_id
from .maxim_fields import (
    GENERATION_FIELDS,
    GENERATION_UPDATE,
    SPAN_FIELDS,
    TRACE_FIELDS,
    completed,
    failure_of,
    line_fields,
    node_fields,
)

__all__ = [
    "DEAD_LETTER_TOPIC",
    "MAXIM_LINES",
    "MODELLED",
    "CommitLine",
    "Translation",
    "encode_translated",
    "event_id",
    "not_modelled",
    "parse_lines",
    "referenced_nodes",
    "refused",
    "translate",
]

# The origin topic of the Maxim route's dead letters (they have no Kafka origin).
DEAD_LETTER_TOPIC = "gateway.maxim"
# Every (entity, action) maxim-py 3.14 sends, read from its logger components
# (``maxim/logger/components/*.py``; ``upload-attachment`` is sent as ``add-attachment``
# by its writer once the file is uploaded). Metric labels are bounded to these.
MAXIM_LINES: dict[str, tuple[str, ...]] = {
    "session": ("create", "update", "end", "add-event", "add-feedback", "add-attachment",
                "evaluate"),
    "trace": ("create", "update", "end", "add-span", "add-generation", "add-tool-call",
              "add-retrieval", "add-error", "add-event", "add-feedback", "add-attachment",
              "evaluate"),
    "span": ("update", "end", "add-span", "add-generation", "add-tool-call", "add-retrieval",
             "add-error", "add-event", "add-attachment", "evaluate"),
    "generation": ("update", "result", "end", "add-cost", "add-attachment", "evaluate"),
    "tool_call": ("update", "result", "error", "end", "evaluate"),
    "retrieval": ("update", "end", "add-attachment", "evaluate"),
}  # fmt: skip

_LINE = re.compile(
    r"^(?P<entity>[a-z_]+)\{id=(?P<id>[^,]*),action=(?P<action>[a-z-]+),data=(?P<data>.*)\}$",
    re.DOTALL,
)
# Actions that create a child node, addressed by its own id in later lines.
_CHILD_ACTIONS = {"add-span": "span", "add-generation": "generation",
                  "add-tool-call": "tool_call", "add-retrieval": "retrieval"}  # fmt: skip
# Actions that hang a leaf node (no later lines of its own) on the line's node.
_LEAF_ACTIONS = {"add-event": "event", "add-error": "error", "add-attachment": "attachment"}
_NODE_ACTIONS = ("create", "update", "end")
# Entities whose lines need their trace's id (known from their create line).
_IN_TRACE = ("span", "generation", "tool_call", "retrieval")
# What logflume models of MAXIM_LINES: everything but ``evaluate`` (evaluators run on
# Maxim's platform; kept as dead letters).
MODELLED: dict[str, frozenset[str]] = {
    entity: frozenset(actions) - {"evaluate"} for entity, actions in MAXIM_LINES.items()
}


@dataclass(frozen=True, slots=True)
class CommitLine:
    index: int
    entity: str
    entity_id: str
    action: str
    data: dict[str, Any]
    text: str


@dataclass(slots=True)
class Translation:
    """Events (``(line index, type, body)``), nodes to record, refusals, the lines no
    contract event models (to dead-letter, see :func:`not_modelled`), and lines naming a
    node whose trace is not known yet (to hold, see :mod:`gateway.held`)."""

    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (kind, trace id)
    made_by: dict[str, int] = field(default_factory=dict)  # child id -> its create line
    errors: list[tuple[int, FieldError]] = field(default_factory=list)
    unmodelled: list[CommitLine] = field(default_factory=list)
    held: list[CommitLine] = field(default_factory=list)


def parse_lines(text: str) -> tuple[list[CommitLine], list[tuple[int, FieldError]]]:
    """The commit lines of a request body; malformed ones come back as errors."""
    lines: list[CommitLine] = []
    errors: list[tuple[int, FieldError]] = []
    for index, raw in enumerate(text.split("\n")):
        raw = raw.strip()
        if not raw:
            continue
        match = _LINE.match(raw)
        if match is None:
            errors.append((index, FieldError("line", "is not entity{id=...,action=...,data=...}")))
            continue
        try:
            data = orjson.loads(match["data"])
        except orjson.JSONDecodeError:
            errors.append((index, FieldError("data", "is not valid JSON")))
            continue
        if data is not None and not isinstance(data, dict):
            errors.append((index, FieldError("data", "must be a JSON object")))
            continue
        lines.append(
            CommitLine(index, match["entity"], match["id"], match["action"], data or {}, raw)
        )
    return lines, errors


def referenced_nodes(lines: list[CommitLine]) -> set[str]:
    """Ids of the nodes below a trace whose trace must be known beforehand (not created
    here)."""
    created = {
        str(line.data.get("id"))
        for line in lines
        if line.action in _CHILD_ACTIONS and line.entity in ("trace", "span")
    }
    return {
        line.entity_id
        for line in lines
        if line.entity in _IN_TRACE and line.entity_id not in created and valid_id(line.entity_id)
    }


def _digest(project: str, text: str) -> str:
    return hashlib.sha256(f"{project}\n{text}".encode()).hexdigest()


def event_id(project: str, line: CommitLine) -> str:
    return f"mx_{_digest(project, line.text)[:40]}"


def _modelled(line: CommitLine) -> bool:
    return line.action in MODELLED.get(line.entity, ())


class _Translator:
    """One batch's lines to events (see :func:`translate`)."""

    def __init__(self, project: str, known: Mapping[str, str], received: datetime) -> None:
        self.project, self.received = project, received
        self.out = Translation()
        self.trace_of = dict(known)
        self.results: dict[str, dict[str, Any]] = {}  # generation id -> its result (batch)

    def emit(self, line: CommitLine, etype: str, body: dict[str, Any]) -> None:
        self.out.events.append((line.index, etype, body))

    def refuse(self, line: CommitLine, name: str, reason: str) -> None:
        self.out.errors.append((line.index, FieldError(name, reason)))

    def line(self, line: CommitLine) -> None:
        """Translate one line, or refuse it: an id outside the contract's rule (checked
        before the id is recorded, looked up or held), or data nested deeper than JSON
        encoding goes (orjson writes 254 levels; ``str`` of a value recurses too)."""
        problem = id_problem(line.entity_id)
        if problem is not None:
            self.refuse(line, "id", problem)
            return
        try:
            self.dispatch(line)
        except (RecursionError, orjson.JSONEncodeError):
            self.refuse(line, "data", "is nested too deeply to be encoded as JSON")

    def dispatch(self, line: CommitLine) -> None:
        entity, node, action = line.entity, line.entity_id, line.action
        if entity == "trace":
            self.trace_of[node] = node
            self.out.nodes.setdefault(node, ("trace", node))
        if not _modelled(line):
            self.out.unmodelled.append(line)  # kept as a dead letter; never held
            return
        trace_id = self.trace_of.get(node)
        if entity in _IN_TRACE and trace_id is None:
            self.out.held.append(line)  # its create line has not arrived yet (gateway.held)
            return
        # Where the line's node is: a trace (and its parent below it), or a session.
        where: dict[str, Any] = (
            {"session_id": node} if entity == "session"
            else {"trace_id": trace_id, "parent_id": None if entity == "trace" else node}
        )  # fmt: skip
        if action in _CHILD_ACTIONS:
            self.child(line, _CHILD_ACTIONS[action], where)
        elif action in _LEAF_ACTIONS:
            self.leaf(line, _LEAF_ACTIONS[action], where)
        elif action == "add-feedback":
            self.feedback(line, where)
        elif entity in ("trace", "span") and action in _NODE_ACTIONS:
            body = {
                "id": node,
                "action": action,
                **line_fields(line.data, TRACE_FIELDS if entity == "trace" else SPAN_FIELDS),
            }
            if entity == "span":
                body["trace_id"] = trace_id
                value = body.get("input")
                if isinstance(value, dict) and "value" in value:  # {"type": "text", "value"}
                    body["input"] = value["value"]
            self.emit(line, entity, body)
        elif entity == "generation":
            self.generation(line, str(trace_id))
        else:  # a tool call's or retrieval's update, result, error or end; a session's
            self.node(line, entity, where)

    def child(self, line: CommitLine, kind: str, where: dict[str, Any]) -> None:
        child = line.data.get("id")
        if child is None:
            self.refuse(line, "data.id", "is required")
            return
        problem = id_problem(child)
        if problem is not None:
            self.refuse(line, "data.id", problem)
            return
        if kind in ("span", "generation"):
            names = SPAN_FIELDS if kind == "span" else GENERATION_FIELDS
            etype, body = kind, {"id": child, **where, **line_fields(line.data, names)}
        else:
            etype, body = "node", {"id": child, "kind": kind, **where,
                                   **node_fields(kind, line.data)}  # fmt: skip
        # Recorded only once its body is made (a line refused on the way records nothing).
        trace_id = where["trace_id"]
        self.trace_of[child] = trace_id
        self.out.nodes[child] = (kind, trace_id)
        self.out.made_by[child] = line.index
        self.emit(line, etype, body)

    def leaf(self, line: CommitLine, kind: str, where: dict[str, Any]) -> None:
        """An event, error or attachment; an error has no id of its own in maxim-py 3.14."""
        leaf = line.data.get("id")
        if not isinstance(leaf, str) or not leaf:
            leaf = f"mx{kind[:2]}_{_digest(self.project, line.text)[:32]}"
        body = {"id": leaf, "kind": kind, **where, **node_fields(kind, line.data)}
        self.emit(line, "node", body)

    def feedback(self, line: CommitLine, where: dict[str, Any]) -> None:
        data = dict(line.data)
        body = {
            "id": f"mxf_{_digest(self.project, line.text)[:40]}",
            **{k: v for k, v in where.items() if k != "parent_id"},
            "value": data.pop("score", None),
        }
        if data.get("comment") is not None:
            body["comment"] = str(data.pop("comment"))
        body.update(line_fields(data, {"metadata": "metadata"}))
        self.emit(line, "feedback", body)

    def node(self, line: CommitLine, kind: str, where: dict[str, Any]) -> None:
        """A tool call's, retrieval's or session's own line (create, update, result,
        error, end)."""
        action = {"result": "update", "error": "update"}.get(line.action, line.action)
        if kind == "session":
            where = {"session_id": line.entity_id}
        else:
            where = {"trace_id": where["trace_id"]}
        body = {"id": line.entity_id, "kind": kind, "action": action, **where,
                **node_fields(kind, line.data)}  # fmt: skip
        self.emit(line, "node", body)

    def generation(self, line: CommitLine, trace_id: str) -> None:
        node, data = line.entity_id, line.data
        if line.action == "result":
            result = data.get("result")
            if not isinstance(result, dict):
                self.refuse(line, "data.result", "must be an object")
                return
            if "error" in result and "choices" not in result:
                body = {"generation_id": node, "trace_id": trace_id,
                        "error": failure_of(result["error"])}  # fmt: skip
                self.emit(line, "generation_error", body)
            else:
                completion = completed(result, node, self.received)
                body = {"generation_id": node, "trace_id": trace_id, "result": completion}
                self.emit(line, "generation_result", body)
            self.results[node] = body
        elif line.action == "end" and node in self.results:  # folded into its result
            if data.get("endTimestamp") is not None:
                self.results[node]["end_time"] = data["endTimestamp"]
        else:  # update, add-cost, or an end without its result in this batch
            action = "end" if line.action == "end" else "update"
            body = {"id": node, "action": action, "trace_id": trace_id,
                    **line_fields(data, GENERATION_UPDATE)}  # fmt: skip
            self.emit(line, "generation", body)


def translate(
    project: str, lines: list[CommitLine], known: Mapping[str, str], received: datetime
) -> tuple[Translation, list[dict[str, Any]]]:
    """Events for ``lines`` (``known``: node id -> trace id, from earlier batches), and
    their envelopes in line order."""
    translator = _Translator(project, known, received)
    for line in lines:
        translator.line(line)
    out = translator.out
    by_index = {line.index: line for line in lines}
    envelopes = [
        {
            "event_id": event_id(project, by_index[index]),
            "type": etype,
            "ts": (received + timedelta(microseconds=index)).isoformat(),
            "project": project,
            "body": body,
        }
        for index, etype, body in out.events
    ]
    return out, envelopes


_Encoded = TypeVar("_Encoded")


def encode_translated(
    translation: Translation, envelopes: list[dict[str, Any]], encode: Callable[[Any], _Encoded]
) -> tuple[list[_Encoded], list[tuple[int, FieldError]]]:
    """The translated events ``encode`` accepts, and its refusals per line. A child whose
    create the contract refused was never made: it leaves ``translation.nodes``, so that it
    is not recorded, and later lines naming it are held (until a valid create comes, else
    dead-lettered with the reason) instead of accepted for a node that does not exist."""
    accepted: list[_Encoded] = []
    refusals: list[tuple[int, FieldError]] = []
    made_by = translation.made_by
    for (index, _, body), item in zip(translation.events, envelopes, strict=True):
        try:
            accepted.append(encode(item))
        except ContractError as exc:
            refusals += [(index, e) for e in exc.errors]
            node = body.get("id")
            if isinstance(node, str) and made_by.get(node) == index:
                translation.nodes.pop(node, None)
    return accepted, refusals


def _label(entity: str, action: str) -> tuple[str, str]:
    """Metric labels: the line's own entity and action when maxim-py sends them, else
    ``other`` (a client's text must not mint time series)."""
    if entity not in MAXIM_LINES:
        return "other", "other"
    return entity, action if action in MAXIM_LINES[entity] else "other"


def _kept(project: str, raw: str, what: str, why: str, labels: tuple[str, ...]) -> Kept:
    digest = _digest(project, raw)
    reason = f"maxim {what}: {why}; kept verbatim (project {project})"
    origin = Origin(DEAD_LETTER_TOPIC, 0, int(digest[:15], 16))
    return Kept(DeadLetter(origin, 0, reason, raw.encode(), f"mx_{digest[:40]}"), labels)


def not_modelled(project: str, lines: list[CommitLine]) -> list[Kept]:
    """Dead letters of the lines no contract event carries (:attr:`Translation.unmodelled`)."""
    return [
        _kept(project, line.text, f"{line.entity}.{line.action}", "not modelled by logflume",
              (*_label(line.entity, line.action), "not_modelled"))
        for line in lines
    ]  # fmt: skip


def refused(
    project: str, lines: list[CommitLine], errors: list[tuple[int, FieldError]], text: str = ""
) -> list[Kept]:
    """Dead letters of the lines that ``errors`` refuse (their event invalid, or malformed:
    then ``text``, the request body, has the line), one per line with every field and
    reason."""
    reasons: dict[int, list[str]] = {}
    for index, error in errors:
        reasons.setdefault(index, []).append(f"{error.field}: {error.reason}")
    by_index = {line.index: line for line in lines}
    raw_lines = text.split("\n")  # parse_lines numbers the lines the same way
    kept = []
    for index, why in sorted(reasons.items()):
        line = by_index.get(index)
        if line is None:  # malformed: no entity or action to name
            raw, what, labels = raw_lines[index].strip(), "line", ("unparsed", "unparsed")
        else:
            raw, what = line.text, f"{line.entity}.{line.action}"
            labels = _label(line.entity, line.action)
        kept.append(_kept(project, raw, what, f"refused ({'; '.join(why)})", (*labels, "refused")))
    return kept
