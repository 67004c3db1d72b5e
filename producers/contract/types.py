"""Constrained scalar types and small shared objects of the wire contract.

Every rule a value must satisfy lives on its type here, so that each model field states
its rule once and every validation error names the field that broke it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
)

__all__ = [
    "ID_PATTERN",
    "ID_RULE",
    "MAX_ID_BYTES",
    "MAX_ID_LENGTH",
    "MAX_PROJECT_LENGTH",
    "PROJECT_PATTERN",
    "PROJECT_RULE",
    "ChatMessage",
    "Cost",
    "EntityId",
    "JsonObject",
    "Judgment",
    "Name",
    "ProjectName",
    "PromptPath",
    "ProviderObject",
    "Seconds",
    "StrictBool",
    "Tags",
    "TokenCount",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceFunction",
    "WireModel",
    "check_id_bytes",
]

MAX_ID_LENGTH = 1024
# A PostgreSQL btree index entry holds at most 2,704 bytes, and every index over an id also
# holds the project (and at most a timestamp): an id is kept to 2,048 bytes of UTF-8 so that
# each of them fits (1,024 characters of ASCII or two-byte letters always do).
MAX_ID_BYTES = 2048

# An id is the caller's own string (Humanloop documents reference ids as "a unique string"
# kept by the user's systems): any text but U+0000, which PostgreSQL text cannot hold. Keys
# and URLs encode ids where they join them (``producers.contract.keys``).
ID_PATTERN = r"^[^\x00]+$"
ID_RULE = "must not contain NUL (U+0000)"


def check_id_bytes(value: str) -> str:
    """An id's UTF-8 bytes within MAX_ID_BYTES (measured only when it could pass them: a
    character takes at most 4 bytes)."""
    if len(value) * 4 > MAX_ID_BYTES and len(value.encode()) > MAX_ID_BYTES:
        raise ValueError(f"is over {MAX_ID_BYTES} bytes in UTF-8")
    return value


EntityId = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description=(
            f"An identifier: any non-empty text of at most {MAX_ID_LENGTH} characters and "
            f"{MAX_ID_BYTES} bytes in UTF-8, without NUL."
        ),
    ),
    AfterValidator(check_id_bytes),
]

# A project names a tenant in keys, API keys and URLs: letters, digits and `._:@-` only,
# starting with a letter or digit. It never holds `/`, which ends it in every key.
MAX_PROJECT_LENGTH = 128
PROJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
PROJECT_RULE = "must be letters, digits and . _ : @ - only, starting with a letter or digit"
ProjectName = Annotated[
    str,
    Field(
        pattern=PROJECT_PATTERN,
        min_length=1,
        max_length=MAX_PROJECT_LENGTH,
        description="A project: letters, digits and . _ : @ - (starting alphanumeric).",
    ),
]


def _check_prompt_path(value: str) -> str:
    # Cheap test first: only a path with "//", a leading "/" or ".", a trailing "/" or a
    # "/." can hold an empty or dot segment.
    if "//" not in value and "/." not in value and value[:1] not in "/." and value[-1:] != "/":
        return value
    segments = value.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError("path segments must be non-empty and not '.' or '..'")
    return value


# A Humanloop file path such as `folder/name`: slashes allowed, no empty or dot segments.
PromptPath = Annotated[
    str,
    Field(
        pattern=r"^[^\x00-\x1f]+$",
        max_length=512,
        description="Path of the Prompt, e.g. `folder/name`; no empty, `.` or `..` segments.",
    ),
    AfterValidator(_check_prompt_path),
]

Name = Annotated[str, Field(max_length=1024)]

TokenCount = Annotated[StrictInt, Field(ge=0, le=10**12, description="A token count, >= 0.")]

# StrictFloat still takes JSON integers; it rejects strings, booleans, NaN and infinities.
Cost = Annotated[
    StrictFloat,
    Field(ge=0, le=10**9, allow_inf_nan=False, description="Cost in dollars: finite, >= 0."),
]

Seconds = Annotated[
    StrictFloat,
    Field(ge=0, allow_inf_nan=False, description="A duration in seconds: finite, >= 0."),
]

JsonObject = dict[str, Any]

Tags = dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=4096)]]

# Humanloop's judgment: "boolean or double or list of strings or string".
Judgment = StrictBool | Annotated[StrictFloat, Field(allow_inf_nan=False)] | list[str] | str


class WireModel(BaseModel):
    """Base of the contract's own objects: immutable, unknown fields rejected by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderObject(BaseModel):
    """Objects defined by LLM providers: known fields checked, newer ones kept verbatim."""

    model_config = ConfigDict(extra="allow", frozen=True)


class ToolCallFunction(ProviderObject):
    name: Name
    arguments: str = ""


class ToolCall(ProviderObject):
    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(ProviderObject):
    """One chat message, as OpenAI, Humanloop and Maxim exchange them."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[JsonObject] | None = None
    name: Name | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = None


class _FunctionName(WireModel):
    name: Name


class ToolChoiceFunction(WireModel):
    """`{"type": "function", "function": {"name": ...}}`: force the named function."""

    type: Literal["function"]
    function: _FunctionName


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction
