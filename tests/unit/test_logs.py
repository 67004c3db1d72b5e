"""Structured logs: one JSON object per line, extra fields kept, passwords in URLs masked."""

from __future__ import annotations

import io
import json
import logging

from kernel.logs import JsonFormatter, apply_format, hide_payload_debug, redact


def _logger(stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    apply_format("json", logger)
    return logger


def test_one_json_object_per_line_with_extra_fields() -> None:
    stream = io.StringIO()
    logger = _logger(stream)
    logger.info("batch written: %d rows", 12, extra={"topic": "t.events", "partition": 3})
    logger.warning("second\nline")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["message"] == "batch written: 12 rows"
    assert first["level"] == "info"
    assert first["logger"] == logger.name
    assert first["topic"] == "t.events" and first["partition"] == 3
    assert first["time"].endswith("+00:00")
    assert json.loads(lines[1])["message"] == "second\nline"


def test_exceptions_are_one_line_too() -> None:
    stream = io.StringIO()
    logger = _logger(stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_passwords_in_urls_are_masked() -> None:
    assert redact("dsn postgresql://u:s3cr%t@h:5432/db up") == "dsn postgresql://u:***@h:5432/db up"
    assert redact("http://host:8080/path") == "http://host:8080/path"  # a port is not a password
    stream = io.StringIO()
    _logger(stream).error("cannot reach %s", "postgresql://logflume:hunter2@127.0.0.1/x")
    assert "hunter2" not in stream.getvalue()


def test_text_format_leaves_handlers_alone() -> None:
    handler = logging.StreamHandler(io.StringIO())
    logger = logging.getLogger("test.logs.text")
    logger.addHandler(handler)
    apply_format("text", logger)
    assert not isinstance(handler.formatter, JsonFormatter)
    logger.removeHandler(handler)


def test_passwords_with_unencoded_characters_and_empty_users_are_masked() -> None:
    assert redact("postgresql://u:se/cret@db:5432/app") == "postgresql://u:***@db:5432/app"
    assert redact("postgresql://u:p@ss@db/app") == "postgresql://u:***@db/app"
    assert redact("postgresql://:secret@db/app") == "postgresql://:***@db/app"


def test_kafka_client_debug_lines_that_carry_records_are_dropped() -> None:
    hide_payload_debug()
    hide_payload_debug()  # idempotent: one filter per logger
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    producer = logging.getLogger("aiokafka.producer.producer")
    conn = logging.getLogger("aiokafka.conn")
    assert len(producer.filters) == len(conn.filters) == 1
    for logger in (producer, conn):
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        producer.debug("Sending (key=%s value=%s) to %s", b"k", b"SECRET MESSAGES", "tp")
        conn.debug("Request to %s:%d %d: %s", "h", 9092, 7, "ProduceRequest(SECRET)")
        conn.debug("Response from %s:%d %d: %s", "h", 9092, 7, "FetchResponse(SECRET)")
        producer.debug("Sending batch to %s", "tp")  # carries no record: kept
    finally:
        for logger in (producer, conn):
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
    assert "SECRET" not in stream.getvalue()
    assert "Sending batch to tp" in stream.getvalue()
