"""Structured logs: ``--log-format json`` (or ``LOGFLUME_LOG_FORMAT=json``) writes one JSON
object per line, for log shippers; ``text`` keeps rich's human-readable lines.

A JSON line has ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message`` and the
record's extra fields (``log.info("...", extra={"topic": t, "partition": p})``), plus
``exception`` when there is one. Services log topics, partitions, offsets and ids, never
event payloads; as a last guard every line has the password of any ``scheme://user:pw@``
URL masked, so a DSN that slips into a message does not leak.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = ["JsonFormatter", "LogFormat", "apply_format", "hide_payload_debug", "redact"]

LogFormat = Literal["text", "json"]

# The password runs to the URL's last "@" (one left unencoded, or a "/", stays inside it);
# the user may be empty (``postgresql://:pw@host``).
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)\S+@")
# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db`` anywhere in ``text``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


def apply_format(fmt: LogFormat, logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root) the JSON formatter, when ``fmt``
    is json. Used after a framework (Faust) installed its own handlers."""
    if fmt != "json":
        return
    target = logger or logging.getLogger()
    for handler in target.handlers:
        handler.setFormatter(JsonFormatter())


# aiokafka's DEBUG lines that print what travels: every produced record's key and value,
# every request and response (record batches included). Payloads never go to logs, so
# these are dropped whatever level an application or ``--log-level debug`` sets.
_PAYLOAD_DEBUG = {
    "aiokafka.producer.producer": ("Sending (key=",),
    "aiokafka.conn": ("Request to ", "Response from "),
}


class _DropPayloadDebug(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.prefixes))


def hide_payload_debug() -> None:
    """Drop the Kafka client's DEBUG lines that carry records or requests (idempotent)."""
    for name, prefixes in _PAYLOAD_DEBUG.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPayloadDebug) for f in logger.filters):
            logger.addFilter(_DropPayloadDebug(prefixes))


def json_handler() -> logging.Handler:
    """A stderr handler writing JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    return handler
