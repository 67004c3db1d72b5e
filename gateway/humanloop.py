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
``prompt`` (``config.id`` to ``config_id``; ``config.type`` must be ``model``, what a
Prompt's log is), and its ``feedback`` (one entry or a list) becomes feedback events, each
entry's keys kept: ``id``, ``value``, ``comment``, ``source`` (else its ``type``), ``user``,
``metadata``, ``created_at``, and any other key in the feedback's metadata. A field of the
wrong type, or one given under both of its names with different values, is refused
(:class:`ContractError`, field and reason): nothing is dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from producers.contract import ContractError, FieldError
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


def _alias(body: dict[str, Any], name: str, value: Any, given_as: str) -> None:
    """Set ``body[name]`` from a field of the older request (``given_as``); refused when
    the request also gives ``name`` with another value (neither would be dropped)."""
    if name in body and body[name] != value:
        reason = f"differs from {name}, given too; give one"
        raise ContractError([FieldError(f"body.{given_as}", reason)])
    body[name] = value


def legacy_log_body(request: dict[str, Any]) -> dict[str, Any]:
    """A ``log`` body from one item of the older ``POST /logs``; raises ContractError for
    a ``config`` or ``feedback`` it cannot carry (see the module docstring)."""
    body = {k: v for k, v in request.items() if v is not None and k not in IGNORED_FIELDS}
    _feedback_entries(body.pop("feedback", None))  # checked here, published by the route
    project = body.pop("project", None)
    if project is not None:
        _alias(body, "path", project, "project")
    project_id = body.pop("project_id", None)
    if project_id is not None:
        _alias(body, "prompt_id", project_id, "project_id")
    config = body.pop("config", None)
    if config is not None:
        if not isinstance(config, dict):
            raise ContractError([FieldError("body.config", "must be an object (a model config)")])
        kernel = dict(config)
        if kernel.get("type", "model") != "model":
            reason = "must be model: a log of POST /logs is a Prompt's (a model config)"
            raise ContractError([FieldError("body.config.type", reason)])
        kernel.pop("type", None)
        config_id = kernel.pop("id", None)
        if config_id is not None:
            _alias(body, "config_id", config_id, "config.id")
        if "prompt" in body:
            raise ContractError([FieldError("body.config", "cannot be given with prompt")])
        body["prompt"] = kernel
    body["id"] = body.pop("log_id", None) or body.get("id") or new_id("data_")
    if "trace_parent_id" in body:
        body["trace_parent_log_id"] = body.pop("trace_parent_id")
    _times(body)
    return body


# Keys of an older feedback entry the feedback body takes as they are.
_FEEDBACK_KEYS = ("comment", "source", "user", "metadata")


def _feedback_entries(given: Any) -> list[Any]:
    """The entries of an older ``feedback``: a list, or one entry (as Humanloop takes)."""
    if given is None:
        return []
    if isinstance(given, dict):
        return [given]
    if not isinstance(given, list):
        reason = "must be a feedback object or a list of them"
        raise ContractError([FieldError("body.feedback", reason)])
    return given


def feedback_bodies(request: dict[str, Any], log: dict[str, Any]) -> list[dict[str, Any]]:
    """Feedback events for the ``feedback`` entries of an older ``POST /logs`` item (an
    entry that is not an object is its value); every key of an entry is kept."""
    bodies = []
    for entry in _feedback_entries(request.get("feedback")):
        if not isinstance(entry, dict):
            bodies.append({"id": new_id("fbk_"), "log_id": log["id"], "value": entry})
            continue
        rest = {k: v for k, v in entry.items() if v is not None}
        body: dict[str, Any] = {"id": rest.pop("id", None) or new_id("fbk_"), "log_id": log["id"]}
        if log.get("reference_id"):
            body["reference_id"] = log["reference_id"]
        body["value"] = rest.pop("value", None)
        body.update({name: rest.pop(name) for name in _FEEDBACK_KEYS if name in rest})
        if "created_at" in rest:
            body["created_at"] = _aware(rest.pop("created_at"))
        if "type" in rest and "source" not in body:
            body["source"] = rest.pop("type")  # Humanloop's feedback type (rating, ...)
        if rest:  # keys the feedback has no field for (``type`` beside a source, ...)
            metadata = body.get("metadata")
            if metadata is None or isinstance(metadata, dict):
                body["metadata"] = {**rest, **(metadata or {})}
            # else: the contract refuses the metadata, and so the request
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
