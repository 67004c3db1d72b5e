"""The one rule for NUL characters, applied in stage 1, before anything reaches the sink.

PostgreSQL ``text`` and ``jsonb`` cannot hold U+0000, and JSON may carry it (``\\u0000``).
Every NUL in a string value or object key of an event is replaced by U+FFFD (the
replacement character), so the value is stored, visibly marked, and never stalls a sink.
Records without ``\\u0000`` in their bytes (nearly all) skip the walk entirely.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NUL_ESCAPE", "REPLACEMENT", "scrub_nul"]

NUL_ESCAPE = b"\\u0000"  # how a NUL appears inside JSON text
REPLACEMENT = "\ufffd"


def scrub_nul(value: Any) -> Any:
    """``value`` with every NUL in its strings and keys replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT) if "\x00" in value else value
    if isinstance(value, dict):
        return {scrub_nul(k): scrub_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_nul(item) for item in value]
    return value
