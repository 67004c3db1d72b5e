"""The contract's id rule, for ids the gateway takes outside an event body (pure).

A Maxim line names its node (``trace{id=...}``) and its child (``data.id``) outside any
contract body, and the gateway looks those ids up in and records them to PostgreSQL
(:mod:`gateway.nodes`, :mod:`gateway.held`) before any event is validated; a read cursor
carries an id back to a query. Each is checked first against the contract's own rule
(:data:`producers.contract.types.EntityId`: 1 to 1,024 characters, at most 2,048 bytes of
UTF-8, no NUL), so an id PostgreSQL cannot hold or index is refused with the contract's
words instead of failing the query.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from producers.contract.events import error_reason
from producers.contract.types import EntityId

__all__ = ["id_problem", "valid_id"]

_ENTITY_ID: TypeAdapter[str] = TypeAdapter(EntityId)


def id_problem(value: Any) -> str | None:
    """Why ``value`` is not an id under the contract's rule (its words), or None."""
    if not isinstance(value, str):
        return "must be a string"
    try:
        _ENTITY_ID.validate_python(value)
    except ValidationError as exc:
        return " and ".join(error_reason(e) for e in exc.errors(include_url=False))
    return None


def valid_id(value: Any) -> bool:
    """Whether ``value`` is an id under the contract's rule."""
    return id_problem(value) is None
