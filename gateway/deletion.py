"""What a deletion publishes: one ``delete`` event per entity it erases.

A log is named by id or reference id; a trace or a session stands for every member that
PostgreSQL stores: the trace node, its spans, generations and logs (a session: the traces
of its traces and of its logs). Each member gets a ``delete`` event routed with that
member's other events (``producers.contract.deletion``). A stored log is deleted under both
its id and its reference id (stage 1 keys a log by its reference id when it has one).
Maxim's other nodes of a trace (tool calls, retrievals, events, errors, attachments) are
members too, and a Maxim session's own node, events and attachments go with the session.
Members that the pipeline has not stored yet (still in flight when the deletion is asked)
are not found, and a name that matches nothing stored is still deleted as given. The
evaluator logs judging a deleted log are deleted with it (as its feedback is).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .store import ReadStore

__all__ = ["Targets", "resolve"]


@dataclass(slots=True)
class Targets:
    """The entities to erase, as ``delete`` bodies (deduplicated, in a stable order)."""

    bodies: dict[tuple[str, str | None, str | None], dict[str, Any]] = field(default_factory=dict)

    def add(self, kind: str, entity_id: str | None, reference_id: str | None = None) -> None:
        body: dict[str, Any] = {"kind": kind}
        if entity_id is not None:
            body["id"] = entity_id
        if reference_id is not None:
            body["reference_id"] = reference_id
        self.bodies.setdefault((kind, entity_id, reference_id), body)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for kind, _, _ in self.bodies:
            found[kind] = found.get(kind, 0) + 1
        return found


async def resolve(
    store: ReadStore | None,
    project: str,
    *,
    log_ids: Iterable[str] = (),
    reference_ids: Iterable[str] = (),
    trace_ids: Iterable[str] = (),
    session_ids: Iterable[str] = (),
) -> Targets:
    """The ``delete`` bodies that erase the named logs, traces and sessions."""
    targets = Targets()
    log_ids, reference_ids = list(log_ids), list(reference_ids)
    trace_ids = list(trace_ids)
    stored = await store.logs_named(project, log_ids, reference_ids) if store else []
    for row in stored:
        targets.add("log", row["id"], row["reference_id"])
    known_ids = {row["id"] for row in stored}
    known_refs = {row["reference_id"] for row in stored}
    for log_id in log_ids:
        if log_id not in known_ids:
            targets.add("log", log_id)
    for reference_id in reference_ids:
        if reference_id not in known_refs:
            targets.add("log", None, reference_id)
    if store is not None:
        for session_id in session_ids:
            trace_ids += await store.session_traces(project, session_id)
            for node in await store.session_nodes(project, session_id):
                targets.add(node["kind"], node["id"])
    if trace_ids:
        for trace_id in trace_ids:
            targets.add("trace", trace_id)
        nodes = await store.trace_nodes(project, trace_ids) if store else []
        for node in nodes:
            targets.add(node["kind"], node["id"], node["reference_id"])
    if store is not None:  # a log's judgments (evaluator logs) go with it, as its feedback
        logs = [body for (kind, _, _), body in targets.bodies.items() if kind == "log"]
        judged_ids = [body["id"] for body in logs if "id" in body]
        judged_refs = [body["reference_id"] for body in logs if "reference_id" in body]
        for row in await store.judgments_of(project, judged_ids, judged_refs):
            targets.add("log", row["id"], row["reference_id"])
    return targets
