"""A stored row as the read API shows it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.views import LogView, log_view


def _row(**extra: Any) -> dict[str, Any]:
    return {
        "project": "p",
        "id": "data_1",
        "reference_id": "r1",
        "path": "support/answer",
        "prompt_id": "pr_1",
        "version_id": "prv_1",
        "output": "hello",
        "prompt_tokens": 3,
        "save": True,
        "created_at": datetime(2026, 12, 1, tzinfo=UTC),
        "stored_at": datetime(2026, 12, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 12, 1, tzinfo=UTC),
        "version": 2,
        "is_partial": False,
        "payload_carried": 4,
        **extra,
    }


def test_a_stored_log_row_validates_and_keeps_bookkeeping_columns_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unvalidated(**_: Any) -> LogView:
        raise AssertionError("log_view fell back to model_construct: a column it cannot show")

    # The fallback is for stored values the contract would now refuse, not for columns.
    monkeypatch.setattr(LogView, "model_construct", unvalidated)
    view = log_view(_row())
    dumped = view.model_dump()
    assert "payload_carried" not in dumped and "stored_at" not in dumped
    assert dumped["output"] == "hello"
