"""Humanloop requests to wire-contract bodies (pure; the routes add versions and publish).

The official ``humanloop`` SDK (0.8) sends ``POST prompts/log`` with Humanloop's names:
``id`` is the *Prompt's* id, ``log_id`` the log's own, ``trace_parent_id`` the parent log
in a trace. On the wire ``id`` is the log's own id (``data_...``, generated here when not
given) and the Prompt's is ``prompt_id`` (README, "The wire contract"). ``flows/log``,
``tools/log`` and ``evaluators/log`` send the same fields for a Flow, a Tool or an
Evaluator (:data:`KINDS`): ``id`` is then that File's id, and its details (``flow``,
``tool``, an Evaluator's ``spec``) become ``file``. Fields the SDK
sends that logflume does not keep (``run_id``, ``trial_id``) are accepted and ignored;
any other unknown field is refused by the contract with its name. A ``null`` in a create
means "not given" (the SDK sends one for every argument passed as ``None``); in an update
it clears the field. Naive timestamps are taken as UTC, as Humanloop does.

The older ``POST /logs`` (one log or an array) names the Prompt by ``project`` /
``project_id`` and its model config ``config``; those map to ``path`` / ``prompt_id`` /
``prompt``, and its ``feedback`` entries become feedback events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from producers.sdk.encoding import new_id

__all__ = [
    "IGNORED_FIELDS",
    "KINDS",
    "feedback_bodies",
    "kind_log_body",
    "legacy_log_body",
    "log_body",
    "session_of",
    "update_body",
]

# Sent by the Humanloop SDK, meaningful only inside Humanloop: accepted, not stored.
IGNORED_FIELDS = frozenset({"run_id", "trial_id"})
# Log kind -> the request field holding its File's details (a Prompt's stay in ``prompt``).
KINDS = {"flow": "flow", "tool": "tool", "evaluator": "spec"}
_TIME_FIELDS = ("start_time", "end_time", "created_at")
# The update endpoints may also be given the log's identity fields; they address the log.
_UPDATE_ADDRESS = frozenset({"id", "log_id", "reference_id"})


def _aware(value: Any) -> Any:
    """An ISO timestamp without an offset gets UTC's; anything else is left to the contract."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return parsed.replace(tzinfo=UTC).isoformat() if parsed.tzinfo is None else value


def _times(body: dict[str, Any]) -> None:
    for name in _TIME_FIELDS:
        if name in body:
            body[name] = _aware(body[name])


def log_body(request: dict[str, Any], *, environment: str | None = None) -> dict[str, Any]:
    """A ``log`` body from a ``prompts/log`` request (``environment``: the query's)."""
    body = {k: v for k, v in request.items() if v is not None and k not in IGNORED_FIELDS}
    prompt_id = body.pop("id", None)
    if prompt_id is not None:
        body["prompt_id"] = prompt_id
    body["id"] = body.pop("log_id", None) or new_id("data_")
    if "trace_parent_id" in body:
        body["trace_parent_log_id"] = body.pop("trace_parent_id")
    if environment is not None:
        body.setdefault("environment", environment)
    _times(body)
    return body


def kind_log_body(
    kind: str, request: dict[str, Any], *, environment: str | None = None
) -> dict[str, Any]:
    """A ``log`` body from a ``flows/log``, ``tools/log`` or ``evaluators/log`` request."""
    body = log_body(request, environment=environment)
    details = body.pop(KINDS[kind], None)
    if details is not None:
        body["file"] = details
    body["log_kind"] = kind
    return body


def legacy_log_body(request: dict[str, Any]) -> dict[str, Any]:
    """A ``log`` body from one item of the older ``POST /logs``."""
    body = {k: v for k, v in request.items() if v is not None and k not in IGNORED_FIELDS}
    body.pop("feedback", None)
    project = body.pop("project", None)
    if project is not None:
        body.setdefault("path", project)
    project_id = body.pop("project_id", None)
    if project_id is not None:
        body.setdefault("prompt_id", project_id)
    config = body.pop("config", None)
    if isinstance(config, dict):
        body.setdefault("prompt", {k: v for k, v in config.items() if k not in ("id", "type")})
    body["id"] = body.pop("log_id", None) or body.get("id") or new_id("data_")
    if "trace_parent_id" in body:
        body["trace_parent_log_id"] = body.pop("trace_parent_id")
    _times(body)
    return body


def feedback_bodies(request: dict[str, Any], log: dict[str, Any]) -> list[dict[str, Any]]:
    """Feedback events for the ``feedback`` entries of an older ``POST /logs`` item."""
    entries = request.get("feedback")
    if not isinstance(entries, list):
        return []
    bodies = []
    for entry in entries:
        if not isinstance(entry, dict):
            bodies.append({"id": new_id("fbk_"), "log_id": log["id"], "value": entry})
            continue
        body: dict[str, Any] = {"id": new_id("fbk_"), "log_id": log["id"]}
        if log.get("reference_id"):
            body["reference_id"] = log["reference_id"]
        body["value"] = entry.get("value")
        if entry.get("type") is not None:
            body["source"] = entry["type"]
        for name in ("user", "metadata", "created_at"):
            if entry.get(name) is not None:
                body[name] = _aware(entry[name])
        bodies.append(body)
    return bodies


def update_body(
    request: dict[str, Any], *, log_id: str | None = None, reference_id: str | None = None
) -> dict[str, Any]:
    """A ``log_update`` body: the request's fields (explicit nulls kept) and its target."""
    body = {k: v for k, v in request.items() if k not in IGNORED_FIELDS | _UPDATE_ADDRESS}
    if "trace_parent_id" in body:
        body["trace_parent_log_id"] = body.pop("trace_parent_id")
    _times(body)
    if log_id is not None:
        body["id"] = log_id
    if reference_id is not None:
        body["reference_id"] = reference_id
    return body


def session_of(body: dict[str, Any]) -> str | None:
    return body.get("session_id") or body.get("session_reference_id")
