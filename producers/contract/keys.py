"""How ids become parts of keys: Kafka record keys, processor state keys, group keys.

An id is any text of the caller's (``producers.contract.types.EntityId``), so it may hold
every character a key uses to join its parts. Every key of the pipeline is built from
parts that cannot hold the separators that follow them:

- a kind (``log``, ``trace``, ``session``, ...) never holds ``:``;
- a project never holds ``/`` (``PROJECT_PATTERN``);
- an id is written with :func:`key_part`, which percent-encodes ``%`` itself and the
  separators ``/`` and ``\\x1f`` (the separator of a group's member keys).

So ``kind:project/id`` and ``group key \\x1f member key`` each split one way only, and two
distinct ids never meet in one key (``a/b`` + ``c`` and ``a`` + ``b/c`` give ``a%2Fb/c``
and ``a/b%2Fc``). Ids made of letters, digits and ``. _ : @ -`` (every id the contract
took before it took any text) are their own key part, so keys written before stay valid.
"""

from __future__ import annotations

import re

__all__ = ["MEMBER_SEPARATOR", "from_key_part", "key_part", "member_key", "project_key"]

MEMBER_SEPARATOR = "\x1f"
_ESCAPES = {"%": "%25", "/": "%2F", MEMBER_SEPARATOR: "%1F"}
_UNESCAPES = {code: char for char, code in _ESCAPES.items()}
_ESCAPED = re.compile("|".join(map(re.escape, _ESCAPES)))
_CODE = re.compile("%(?:25|2F|1F)")


def key_part(value: str) -> str:
    """An id as one part of a key: ``%``, ``/`` and ``\\x1f`` percent-encoded."""
    if "%" not in value and "/" not in value and MEMBER_SEPARATOR not in value:
        return value  # the common case: three scans at C speed
    return _ESCAPED.sub(lambda m: _ESCAPES[m.group()], value)


def from_key_part(part: str) -> str:
    """The id that :func:`key_part` wrote as ``part``."""
    if "%" not in part:
        return part
    return _CODE.sub(lambda m: _UNESCAPES[m.group()], part)


def project_key(project: str, entity_id: str) -> str:
    """``project/id``: where an entity (or a group) lives among the project's."""
    return f"{project}/{key_part(entity_id)}"


def member_key(group_key: str, member: str) -> str:
    """The key of one member's contribution to a group (both keys built here)."""
    return f"{group_key}{MEMBER_SEPARATOR}{member}"
