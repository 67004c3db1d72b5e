"""Maxim-style handles: ``trace.span(...)``, ``span.generation(...)``, ``gen.result(...)``.

A handle is two or three ids and a reference to the client; every method enqueues one
event and returns at once. Every node below a trace carries ``trace_id`` (the contract
routes and assembles each event on its own). Creates are stamped with ``start_time`` and
ends, results and errors with ``end_time`` (the call's time) unless the caller gave one.
Handles are also context managers: leaving the block ends the trace or span.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

from typing_extensions import Unpack

from .encoding import new_id
from .params import (
    GenerationParams,
    SpanParams,
    SpanUpdateParams,
    TraceUpdateParams,
)

__all__ = ["Generation", "Span", "Trace"]

_START = ("start_time",)
_END = ("end_time",)
_NONE: tuple[str, ...] = ()


class Emitter(Protocol):
    def _emit(self, etype: str, body: dict[str, Any], stamp: tuple[str, ...]) -> None: ...


def open_node(client: Emitter, etype: str, prefix: str, fields: dict[str, Any]) -> str:
    """Enqueue the create event of a trace or span; returns its id (generated if absent)."""
    node_id = fields.get("id")
    if node_id is None:
        node_id = fields["id"] = new_id(prefix)
    client._emit(etype, fields, _NONE if "start_time" in fields else _START)
    return node_id  # type: ignore[no-any-return]


def _node_event(
    client: Emitter, etype: str, node_id: str, action: str, fields: dict[str, Any], **ids: str
) -> None:
    fields["id"] = node_id
    fields["action"] = action
    fields.update(ids)
    stamp = _END if action == "end" and "end_time" not in fields else _NONE
    client._emit(etype, fields, stamp)


class _Parent:
    """What traces and spans share: opening child spans and generations."""

    __slots__ = ("_client", "id", "trace_id")

    def __init__(self, client: Emitter, node_id: str, trace_id: str) -> None:
        self._client = client
        self.id = node_id
        self.trace_id = trace_id

    def _parent_id(self) -> str | None:
        return None

    def span(self, **fields: Unpack[SpanParams]) -> Span:
        """Open a child span."""
        body: dict[str, Any] = fields  # type: ignore[assignment]
        body["trace_id"] = self.trace_id
        parent = self._parent_id()
        if parent is not None:
            body["parent_id"] = parent
        span_id = open_node(self._client, "span", "span_", body)
        return Span(self._client, span_id, self.trace_id)

    def generation(self, **fields: Unpack[GenerationParams]) -> Generation:
        """Record an LLM call being made (provider, model, parameters, messages)."""
        body: dict[str, Any] = fields  # type: ignore[assignment]
        body["trace_id"] = self.trace_id
        parent = self._parent_id()
        if parent is not None:
            body["parent_id"] = parent
        gen_id = body.get("id")
        if gen_id is None:
            gen_id = body["id"] = new_id("gen_")
        self._client._emit("generation", body, _NONE if "start_time" in body else _START)
        return Generation(self._client, gen_id, self.trace_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, trace_id={self.trace_id!r})"


class Trace(_Parent):
    """A trace (``client.trace(...)``)."""

    __slots__ = ()

    def update(self, **fields: Unpack[TraceUpdateParams]) -> None:
        """Set fields of the trace (name, tags, metadata, input, output, ...)."""
        _node_event(self._client, "trace", self.id, "update", fields)  # type: ignore[arg-type]

    def end(self, **fields: Unpack[TraceUpdateParams]) -> None:
        """End the trace (stamped with ``end_time`` now unless given)."""
        _node_event(self._client, "trace", self.id, "end", fields)  # type: ignore[arg-type]

    def __enter__(self) -> Trace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end()


class Span(_Parent):
    """A span under a trace or another span."""

    __slots__ = ()

    def _parent_id(self) -> str | None:
        return self.id

    def update(self, **fields: Unpack[SpanUpdateParams]) -> None:
        _node_event(  # type: ignore[arg-type]
            self._client, "span", self.id, "update", fields, trace_id=self.trace_id
        )

    def end(self, **fields: Unpack[SpanUpdateParams]) -> None:
        """End the span (stamped with ``end_time`` now unless given)."""
        _node_event(  # type: ignore[arg-type]
            self._client, "span", self.id, "end", fields, trace_id=self.trace_id
        )

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end()


class Generation:
    """An LLM call; finish it with :meth:`result` or :meth:`error`."""

    __slots__ = ("_client", "id", "trace_id")

    def __init__(self, client: Emitter, gen_id: str, trace_id: str) -> None:
        self._client = client
        self.id = gen_id
        self.trace_id = trace_id

    def result(self, completion: Mapping[str, Any] | Any) -> None:
        """The provider's answer: an OpenAI ``chat.completion`` as a dict, or the openai
        package's object (anything with ``model_dump()``, dumped by the worker)."""
        body = {"generation_id": self.id, "trace_id": self.trace_id, "result": completion}
        self._client._emit("generation_result", body, _END)

    def error(
        self,
        error: str | BaseException | Mapping[str, Any] | None = None,
        *,
        message: str | None = None,
        code: str | None = None,
        type: str | None = None,
    ) -> None:
        """The call failed: a message, an exception or a ``{message, code, type}`` dict."""
        failure: dict[str, Any]
        if isinstance(error, Mapping):
            failure = dict(error)
        else:
            if isinstance(error, BaseException):
                message = message or str(error) or error.__class__.__name__
                type = type or error.__class__.__name__
            elif isinstance(error, str):
                message = message or error
            failure = {"message": message if message is not None else "error"}
            if code is not None:
                failure["code"] = code
            if type is not None:
                failure["type"] = type
        body = {"generation_id": self.id, "trace_id": self.trace_id, "error": failure}
        self._client._emit("generation_error", body, _END)

    def __repr__(self) -> str:
        return f"Generation(id={self.id!r}, trace_id={self.trace_id!r})"
