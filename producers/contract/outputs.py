"""What an entity output (stage 1 -> ``.entities`` -> the sink) says about payloads.

Payload fields (messages, inputs, outputs, provider request and response, a generation's
result, a tool call's args and result, a retrieval's query and documents: what
``save=false`` keeps out of storage) are the bulk of an event and are not needed to merge,
count or price anything. Stage 1 keeps only their versions in its state
and an entity output carries a payload field only when the events of its version brought
its winning value; ``carried`` lists those fields. The sink writes a payload column only
when the row's output carries it (and clears every payload column of a ``save=false``
log), so PostgreSQL, not the stream's state, is where payloads live.

Whoever keeps only the newest output per entity (the stage's output window, the sink's
batch) must keep the older output's carried fields that the newer one does not carry:
:func:`merge_carried`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CARRIED", "PAYLOAD_FIELDS", "merge_carried"]

PAYLOAD_FIELDS = frozenset(
    {
        "messages",
        "inputs",
        "output",
        "output_message",
        "raw_output",
        "provider_request",
        "provider_response",
        "stdout",
        "tools",
        "input",
        "result",
        "args",
        "query",
        "documents",
    }
)

CARRIED = "carried"  # the output's key listing the payload fields it carries


def merge_carried(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """``newer`` with the payload fields only ``older`` carried (both outputs of one
    entity, ``newer`` of a higher version). A ``save=false`` output carries nothing."""
    old = older.get(CARRIED)
    if not old or newer.get("save") is False:
        return newer
    new = newer.get(CARRIED) or ()
    extra = [name for name in old if name not in new]
    if not extra:
        return newer
    merged = dict(newer)
    for name in extra:
        merged[name] = older.get(name)
    merged[CARRIED] = sorted({*new, *extra})
    return merged
