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
yet comes back in ``held`` (:mod:`gateway.held`). What the contract has no event
for (sessions, tool calls, retrievals, errors, events, feedback, attachments, costs,
generation updates) is acknowledged and counted as ignored; a trace's ``sessionId`` is kept.

Each line becomes an event whose ``event_id`` hashes the project and the line, so a batch
the SDK re-sends after a failure is deduplicated downstream; ``ts`` is the batch's arrival
plus the line's position in microseconds, so later lines win over earlier ones.
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

__all__ = [
    "CommitLine",
    "Translation",
    "event_id",
    "parse_lines",
    "referenced_nodes",
    "translate",
]

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
    """Events (``(line index, type, body)``), nodes to record, refusals, ignored lines, and
    lines naming a node whose trace is not known yet (to hold, see :mod:`gateway.held`)."""

    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (kind, trace id)
    errors: list[tuple[int, FieldError]] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    held: list[CommitLine] = field(default_factory=list)

    def ignore(self, line: CommitLine) -> None:
        key = f"{line.entity}:{line.action}"
        self.ignored[key] = self.ignored.get(key, 0) + 1


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


def event_id(project: str, line: CommitLine) -> str:
    digest = hashlib.sha256(f"{project}\n{line.text}".encode()).hexdigest()
    return f"mx_{digest[:40]}"


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

    def emit(line: CommitLine, etype: str, body: dict[str, Any]) -> None:
        out.events.append((line.index, etype, body))

    for line in lines:
        entity, node, data, action = line.entity, line.entity_id, line.data, line.action
        if entity == "trace":
            trace_of[node] = node
            out.nodes.setdefault(node, ("trace", node))
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
        else:
            out.ignore(line)
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
