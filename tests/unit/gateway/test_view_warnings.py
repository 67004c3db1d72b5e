"""A stored log the contract would now refuse is shown as it is, and its dump never warns
with its values (pydantic's serializer warnings quote them: messages on stderr)."""

from __future__ import annotations

import datetime
import warnings

from gateway.views import LogPage, log_view

_ROW = {
    "id": "log_1",
    "project": "p",
    "messages": [{"role": "wizard", "content": "SECRET PAYLOAD"}],  # a role now refused
    "output": 12345,
    "created_at": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
}


def test_a_log_view_of_a_refused_stored_value_dumps_without_quoting_it() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view = log_view(dict(_ROW))
        alone = view.model_dump(mode="json", exclude_none=False)
        page = LogPage(records=[view]).model_dump(mode="json")
    assert alone["messages"][0]["content"] == "SECRET PAYLOAD"  # shown as stored
    assert page["records"][0]["messages"] == alone["messages"]
    assert not [w for w in caught if "SECRET" in str(w.message)]
