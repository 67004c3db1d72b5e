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

__all__ = ["JsonFormatter", "LogFormat", "apply_format", "redact"]

LogFormat = Literal["text", "json"]

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s/]+@")
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


def json_handler() -> logging.Handler:
    """A stderr handler writing JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    return handler
