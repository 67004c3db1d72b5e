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

Nothing a client sends is dropped: a line that becomes no contract event is kept verbatim
as a dead letter (:func:`not_modelled`, :func:`refused`; published by
:mod:`gateway.deadletters`, stored in ``dead_letters``) with a reason naming its entity and
action. That is every line of what logflume does not model (sessions, tool calls,
retrievals, errors, events, feedback, attachments, costs, evaluations, generation updates,
a generation's ``end`` without its result in the same batch: :data:`MAXIM_LINES` lists what
maxim-py sends) and every line that is malformed or that the contract refuses. A trace's
``sessionId`` is kept on the trace.

Each line becomes an event whose ``event_id`` hashes the project and the line, so a batch
the SDK re-sends after a failure is deduplicated downstream; ``ts`` is the batch's arrival
plus the line's position in microseconds, so later lines win over earlier ones. A dead
letter's origin is the topic ``gateway.maxim`` at an offset taken from the same hash, so a
re-sent line is stored once (``dead_letters`` is unique on its origin).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from producers.contract import FieldError
from producers.contract.deadletters import DeadLetter, Origin

from .deadletters import Kept

__all__ = [
    "DEAD_LETTER_TOPIC",
    "MAXIM_LINES",
    "CommitLine",
    "Translation",
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
_NODE_FIELDS = {"name": "name", "tags": "tags", "metadata": "metadata",
                "startTimestamp": "start_time", "endTimestamp": "end_time"}  # fmt: skip
_TRACE_FIELDS = {**_NODE_FIELDS, "sessionId": "session_id", "input": "input", "output": "output"}
_GENERATION_FIELDS = {"name": "name", "tags": "tags", "metadata": "metadata",
                      "startTimestamp": "start_time", "model": "model", "provider": "provider",
                      "messages": "messages", "modelParameters": "model_parameters"}  # fmt: skip
_CHILD_ACTIONS = {"add-span": "span", "add-generation": "generation"}
_NODE_ACTIONS = ("create", "update", "end")


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
    """Span and generation ids whose trace must be known beforehand (not created here)."""
    created = {
        str(line.data.get("id"))
        for line in lines
        if line.action in _CHILD_ACTIONS and line.entity in ("trace", "span")
    }
    return {
        line.entity_id
        for line in lines
        if line.entity in ("span", "generation") and line.entity_id not in created
    }


def _pick(data: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {wire: data[name] for name, wire in names.items() if data.get(name) is not None}


def _digest(project: str, text: str) -> str:
    return hashlib.sha256(f"{project}\n{text}".encode()).hexdigest()


def event_id(project: str, line: CommitLine) -> str:
    return f"mx_{_digest(project, line.text)[:40]}"


def _modelled(line: CommitLine, resulted: set[str]) -> bool:
    """Whether a contract event carries the line (``resulted``: generations whose result
    came earlier in the batch, into which their ``end`` line folds)."""
    if line.entity in ("trace", "span"):
        return line.action in _CHILD_ACTIONS or line.action in _NODE_ACTIONS
    if line.entity == "generation":
        return line.action == "result" or (line.action == "end" and line.entity_id in resulted)
    return False


def _completion(result: dict[str, Any], generation_id: str, received: datetime) -> dict[str, Any]:
    """Maxim passes results through its provider parsers; id and created may be missing."""
    completion = dict(result)
    completion.setdefault("id", generation_id)
    if not isinstance(completion.get("created"), int):
        completion["created"] = int(received.timestamp())
    return completion


def translate(
    project: str, lines: list[CommitLine], known: Mapping[str, str], received: datetime
) -> tuple[Translation, list[dict[str, Any]]]:
    """Events for ``lines`` (``known``: node id -> trace id, from earlier batches), and
    their envelopes in line order."""
    out = Translation()
    trace_of = dict(known)
    results: dict[str, dict[str, Any]] = {}  # generation id -> its result body (this batch)
    resulted: set[str] = set()  # generations with a result line so far (held or not)

    def emit(line: CommitLine, etype: str, body: dict[str, Any]) -> None:
        out.events.append((line.index, etype, body))

    for line in lines:
        entity, node, data, action = line.entity, line.entity_id, line.data, line.action
        if entity == "trace":
            trace_of[node] = node
            out.nodes.setdefault(node, ("trace", node))
        if entity == "generation" and action == "result":
            resulted.add(node)
        if not _modelled(line, resulted):
            out.unmodelled.append(line)  # kept as a dead letter; never held
            continue
        trace_id = trace_of.get(node)
        if entity in ("span", "generation") and trace_id is None:
            out.held.append(line)  # its create line has not arrived yet (gateway.held)
            continue
        if entity in ("trace", "span") and action in _CHILD_ACTIONS:
            kind = _CHILD_ACTIONS[action]
            child = data.get("id")
            if not isinstance(child, str):
                out.errors.append((line.index, FieldError("data.id", "is required")))
                continue
            assert trace_id is not None
            trace_of[child] = trace_id
            out.nodes[child] = (kind, trace_id)
            parent = node if entity == "span" else None
            names = _NODE_FIELDS if kind == "span" else _GENERATION_FIELDS
            body = {"id": child, "trace_id": trace_id, "parent_id": parent, **_pick(data, names)}
            emit(line, kind, body)
        elif entity in ("trace", "span") and action in ("create", "update", "end"):
            names = _TRACE_FIELDS if entity == "trace" else _NODE_FIELDS
            body = {"id": node, "action": action, **_pick(data, names)}
            if entity == "span":
                body["trace_id"] = trace_id
            emit(line, entity, body)
        elif entity == "generation" and action == "result":
            result = data.get("result")
            if not isinstance(result, dict):
                out.errors.append((line.index, FieldError("data.result", "must be an object")))
                continue
            if "error" in result and "choices" not in result:
                error = result["error"] if isinstance(result["error"], dict) else {}
                failure = {"message": str(error.get("message") or result["error"])}
                for name in ("code", "type"):
                    if error.get(name) not in (None, ""):
                        failure[name] = str(error[name])
                body = {"generation_id": node, "trace_id": trace_id, "error": failure}
                emit(line, "generation_error", body)
            else:
                completion = _completion(result, node, received)
                body = {"generation_id": node, "trace_id": trace_id, "result": completion}
                emit(line, "generation_result", body)
            results[node] = body
        elif entity == "generation" and action == "end" and node in results:
            if data.get("endTimestamp") is not None:
                results[node]["end_time"] = data["endTimestamp"]
        else:  # a generation's end whose result was refused
            out.unmodelled.append(line)
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
