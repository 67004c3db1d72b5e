"""The catalogue of hostile input: each case is one bad event (or request body) and what the
pipeline must make of it: the field it names and a part of the reason.

The same catalogue is sent two ways: through the gateway (where it must end as a 4xx naming
the field) and straight onto the raw topic by a foreign producer (where it must end as a
dead letter naming the field). Raw bytes, not dicts, so that what no JSON encoder writes
(``NaN``, ``Infinity``, truncated text, 2,000 levels of nesting) can be sent at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["BAD_EVENTS", "MIB", "NASTY_IDS", "TS", "BadEvent", "log_event", "nested"]

MIB = 1024 * 1024
TS = "2026-03-02T09:30:00+00:00"


@dataclass(frozen=True, slots=True)
class BadEvent:
    """One hostile event as wire bytes, and the refusal expected: ``field`` (exactly as the
    contract names it) and ``reason`` (a part of the text). ``whole_record``: the bytes are
    not JSON any reader can split, so the whole record is one dead letter. ``whole_request``:
    the gateway refuses the request body as a whole (it is not standard JSON), naming this
    field and reason, instead of the event's."""

    name: str
    raw: bytes
    field: str
    reason: str
    whole_record: bool = False
    whole_request: tuple[str, str] | None = None


def log_event(event_id: str, project: str = "acme", **body: Any) -> dict[str, Any]:
    """A log event around ``body`` (``id`` and ``path`` filled in unless given)."""
    body = {"id": f"data_{event_id}", "path": "bad-input/probe", **body}
    return {"event_id": event_id, "type": "log", "ts": TS, "project": project, "body": body}


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep, as bytes (encoders refuse to write these)."""
    return b'{"a":' * depth + b"{}" + b"}" * depth


def _with_metadata(event_id: str, metadata: bytes) -> bytes:
    head = orjson.dumps(log_event(event_id))[:-2]  # without the closing "}}"
    return head + b',"metadata":' + metadata + b"}}"


def _py_json(item: dict[str, Any]) -> bytes:
    """What Python's own ``json.dumps`` writes: ``NaN`` and ``Infinity`` unquoted."""
    return json.dumps(item).encode()


BAD_EVENTS: tuple[BadEvent, ...] = (
    BadEvent(
        "malformed_json",
        b'{"event_id": "bad-malformed", "type": "log", "body": {"id": ',
        "body",
        "not valid JSON",
        whole_record=True,
        whole_request=("body", "is not valid JSON"),
    ),
    BadEvent(
        "tokens_as_text",
        orjson.dumps(log_event("bad-types-1", prompt_tokens="lots")),
        "body.prompt_tokens",
        "valid integer",
    ),
    BadEvent(
        "ts_not_a_time",
        orjson.dumps({**log_event("bad-types-2"), "ts": "yesterday"}),
        "ts",
        "datetime",
    ),
    BadEvent(
        "body_is_a_list",
        orjson.dumps({**log_event("bad-types-3"), "body": [1, 2]}),
        "body",
        "",
    ),
    BadEvent(
        "nan_tokens",
        _py_json(log_event("bad-nan", prompt_tokens=float("nan"))),
        "body.prompt_tokens",
        "valid integer",
        whole_request=("body", "is not valid JSON"),
    ),
    BadEvent(
        "infinite_cost",
        _py_json(log_event("bad-inf", prompt_cost=float("inf"))),
        "body.prompt_cost",
        "finite",
        whole_request=("body", "is not valid JSON"),
    ),
    BadEvent(
        "negative_tokens",
        orjson.dumps(log_event("bad-negative", output_tokens=-3)),
        "body.output_tokens",
        "greater than or equal to 0",
    ),
    BadEvent(
        "negative_cost",
        orjson.dumps(log_event("bad-negative-cost", prompt_cost=-0.5)),
        "body.prompt_cost",
        "greater than or equal to 0",
    ),
    BadEvent(
        "nul_in_event_id",
        orjson.dumps(log_event("bad-nul\u0000id")),
        "event_id",
        "must not contain NUL",
    ),
    BadEvent(
        "nested_300_levels",
        _with_metadata("bad-deep-300", nested(300)),
        "body",
        "cannot be encoded as JSON",
    ),
    BadEvent(
        "nested_2000_levels",  # deeper than any JSON reader here goes: the record is lost
        _with_metadata("bad-deep-2000", nested(2000)),
        "body",
        "not valid JSON",
        whole_record=True,
        whole_request=("body", "is not valid JSON"),
    ),
    BadEvent(
        "lone_surrogate",  # an escaped half of a UTF-16 pair: JSON, but no text
        orjson.dumps(log_event("bad-surrogate"))[:-2] + b',"output":"\\ud800"}}',
        "body",
        "cannot be encoded as JSON",
        whole_request=("body", "is not valid JSON"),
    ),
    BadEvent(
        "unknown_type",
        orjson.dumps({**log_event("bad-type"), "type": "log_v2"}),
        "type",
        "unknown event type 'log_v2'",
    ),
    BadEvent(
        "nul_in_reference_id",
        orjson.dumps(log_event("bad-nul-ref", reference_id="ticket\u00004711")),
        "body.reference_id",
        "must not contain NUL",
    ),
    BadEvent(
        "id_of_1025_characters",
        orjson.dumps(log_event("bad-long-id", id="i" * 1025)),
        "body.id",
        "at most 1024 characters",
    ),
    BadEvent(
        "session_id_over_2048_bytes",  # 600 characters, but 2,400 bytes of UTF-8
        orjson.dumps(log_event("bad-wide-session", session_id="\U0001f600" * 600)),
        "body.session_id",
        "over 2048 bytes",
    ),
)

# Ids that once were refused and are the caller's own text now: each must land verbatim.
NASTY_IDS: tuple[str, ...] = (
    "../../etc/passwd",
    "x'); DROP TABLE logs; --",
    "r' OR '1'='1",
    "ticket 4711/answer",
    "order#12|a",
    "üñí-ref 100%",
    "what?x=1&y=2",
    "i" * 1024,
)
