"""A stored row as the read API shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.views import LogView, log_view, trace_view


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


def test_maxim_nodes_hang_in_the_tree_with_their_own_fields() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    generation = {"id": "g", "parent_id": "s", "result": {"id": "c"}, "cost_source": "provided",
                  "cost": 0.3, "error": None}  # fmt: skip
    nodes = [
        {"kind": "tool_call", "id": "tc", "parent_id": "s", "result": "ok", "args": "{}",
         "start_time": start, "end_time": start + timedelta(seconds=2)},
        {"kind": "attachment", "id": "a", "parent_id": "g", "attachment": {"url": "u"}},
        {"kind": "error", "id": "e", "parent_id": None, "error": {"message": "boom"}},
    ]  # fmt: skip
    view = trace_view("t", {"id": "t"}, [{"id": "s"}], [generation], [], nodes=nodes,
                      feedback=[{"id": "f", "value": 4, "comment": "good"}])  # fmt: skip
    (span, error) = view.children
    assert (error.kind, error.status, error.error) == ("error", "error", {"message": "boom"})
    children = {child.id: child for child in span.children}
    tool, gen = children["tc"], children["g"]
    assert (tool.result, tool.args, tool.latency, tool.status) == ("ok", "{}", 2.0, "success")
    assert gen.result is None and gen.cost_source == "provided"  # the provider's result: not here
    assert [c.attachment for c in gen.children] == [{"url": "u"}]
    assert view.feedback == [{"id": "f", "value": 4, "comment": "good"}]
