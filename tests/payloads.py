"""A log's payload fields (``producers.contract.PAYLOAD_FIELDS`` but Maxim's ``input`` and
``result``), each holding a marker string: what the save=false tests send and then look
for everywhere."""

from __future__ import annotations

import uuid
from typing import Any

__all__ = ["log_payload", "new_marker"]


def new_marker(tag: str) -> str:
    return f"marker-{tag}-{uuid.uuid4().hex}"


def log_payload(mark: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": mark}],
        "inputs": {"who": mark},
        "output": mark,
        "output_message": {"role": "assistant", "content": mark},
        "raw_output": mark,
        "provider_request": {"q": mark},
        "provider_response": {"a": mark},
        "stdout": mark,
        "tools": [{"name": mark}],
    }
