"""From a call's fields to the wire bytes of one event, validated against the contract.

A call serializes its keyword arguments at once (:meth:`EventEncoder.item`) and enqueues
one bytes object (an :data:`Item`: the type and the emit time in a 9-byte header, then the
body's JSON). The worker (or the caller, in strict mode) turns that into an :data:`Encoded`
pair, ``(routing key, event bytes)`` (:meth:`EventEncoder.finish_item`), and holds a batch
of them as an :class:`EncodedBatch` (two lists, not a tuple per event).

Why bytes and two lists, not tuples: what waits in the queue or in flight is what the
garbage collector visits at every pass that runs meanwhile, and a pass runs on whichever
thread allocates when it is due, often the application's (``bench/sdk_bench.py``: a pass
of the middle generation over ~3,000 young objects, 2,000 of them the ``(key, value)``
tuples of the batch in flight and 650 the queue's ``(type, ts, body)`` tuples, took 1-2
ms of the calling thread). Bytes are not tracked by the collector at all, and a list of
bytes is one object to it.

1. the body is serialized with orjson on the caller's thread (objects with
   ``model_dump()``, such as the openai package's responses or the contract's own models,
   are dumped to JSON first). Bytes, not the caller's dicts, wait in the queue: the event
   is the call's snapshot (a caller may mutate its dicts afterwards), and the queue holds
   nothing the garbage collector must traverse (queued dicts made the collector's full
   passes last up to ~150 ms at 50k calls/s, each one a pause of the calling thread);
2. those exact bytes are validated, so every caller-supplied field is checked, and checked
   on the bytes that travel: ``log`` and ``log_update`` bodies first by the SDK's msgspec
   mirror of the contract (:mod:`producers.contract.mirror`, ~1.5 µs against ~6 µs), which
   only ever accepts what the contract accepts; everything it does not accept, and every
   other type, by the contract's body model (``validate_json``);
3. the envelope around them is built by hand: ``event_id``, ``ts`` and ``project`` are made
   here (or validated once, for the project), so validating them per event would only
   cost time. Measured on this machine for a typical log (2 messages, tokens, output):
   body-only ``validate_json`` ~5.7 µs against ~8 µs for the whole envelope through the
   discriminated union, and ~27 µs for ``validate_python`` + ``encode_event``.

A rejected event is re-parsed whole with :func:`producers.contract.parse_event`, so the
:class:`~producers.contract.ContractError` names fields exactly as the consumer would.
"""

from __future__ import annotations

import math
import os
import random
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, overload

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator

from producers.contract import (
    ContractError,
    DeleteBody,
    FeedbackBody,
    FieldError,
    GenerationBody,
    GenerationErrorBody,
    GenerationResultBody,
    LogBody,
    LogUpdateBody,
    NodeBody,
    SpanBody,
    TraceBody,
    parse_event,
)
from producers.contract.keys import key_part
from producers.contract.mirror import fast_identity

__all__ = [
    "Encoded",
    "EncodedBatch",
    "EventEncoder",
    "Item",
    "item_type",
    "new_id",
    "to_jsonable",
]

Item = bytes
"""What a call enqueues: a header (:data:`_ITEM_HEAD`: the type's code and the emit time)
then the body's JSON; or, when strict mode already encoded the event, :data:`_PRE_HEAD`
(:data:`_PRE_CODE` and the key's length) then the routing key and the event's bytes."""

Encoded = tuple[bytes, bytes]
"""``(routing key, event bytes)``: what the spool stores and the transport sends."""

_BODY_MODELS: Final[dict[str, type[BaseModel]]] = {
    "log": LogBody,
    "log_update": LogUpdateBody,
    "feedback": FeedbackBody,
    "trace": TraceBody,
    "span": SpanBody,
    "generation": GenerationBody,
    "generation_result": GenerationResultBody,
    "generation_error": GenerationErrorBody,
    "node": NodeBody,
    "delete": DeleteBody,
}
_VALIDATORS: Final[dict[str, SchemaValidator]] = {
    name: model.__pydantic_validator__ for name, model in _BODY_MODELS.items()
}


def _ref_or_id(body: Any) -> str:
    return body.reference_id or body.id  # type: ignore[no-any-return]


def _feedback_target(body: Any) -> str:
    return body.target  # type: ignore[no-any-return]


def _generation_id(body: Any) -> str:
    return body.generation_id  # type: ignore[no-any-return]


def _own_id(body: Any) -> str:
    return body.id  # type: ignore[no-any-return]


# The entity identity of each type, as ``producers.contract.entity_identity`` defines it
# (a unit test checks that both agree for every type).
_IDENTITY: Final[dict[str, Callable[[Any], str]]] = {
    "log": _ref_or_id,
    "log_update": _ref_or_id,
    "feedback": _feedback_target,
    "trace": _own_id,
    "span": _own_id,
    "generation": _own_id,
    "generation_result": _generation_id,
    "generation_error": _generation_id,
    "node": _own_id,
    "delete": _ref_or_id,
}

_TYPE_BYTES: Final = {name: name.encode() for name in _BODY_MODELS}
_TYPE_NAMES: Final = tuple(_BODY_MODELS)  # an item's type code is its index here
_TYPE_CODES: Final = {name: code for code, name in enumerate(_TYPE_NAMES)}
_ITEM_HEAD: Final = struct.Struct("<Bd")  # type code, emit time (seconds since the epoch)
_PRE_CODE: Final = 255
assert len(_TYPE_NAMES) < _PRE_CODE
_PRE_HEAD: Final = struct.Struct("<BH")  # _PRE_CODE, the routing key's length
# The whole event in one formatting: the id's hex (new_id's), the type, the emit time (the
# date and time of the second, then the microseconds), the project and the body.
_ENVELOPE: Final = (
    b'{"event_id":"evt_%032x","type":"%b","ts":"%b.%06d+00:00","project":"%b","body":%b}'
)


# Ids come from a private Mersenne Twister seeded from os.urandom, reseeded in a forked
# child: os.urandom itself releases the GIL (getrandom), which on a busy process costs the
# caller a GIL hand-off (up to the 5 ms switch interval). A private instance, so that an
# application seeding ``random`` for reproducibility never makes ids repeat.
_rng = random.Random()
os.register_at_fork(after_in_child=_rng.seed)
_getrandbits = _rng.getrandbits
_UUID4_CLEAR = ~((0xF << 76) | (0xC << 60))
_UUID4_SET = (0x4 << 76) | (0x8 << 60)


def new_id(prefix: str) -> str:
    """``prefix`` + the hex of a random (version 4) UUID, ~0.5 µs; never releases the GIL."""
    return prefix + "%032x" % (_getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)


def to_jsonable(obj: Any) -> Any:
    """orjson's fallback: pydantic-style objects (openai responses, contract models) and
    read-only mappings. Anything else is not JSON and raises ``TypeError``."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        # warnings=False: pydantic warns about values its serializer did not expect (the
        # openai package's parsed completions) and quotes them: the LLM's output on stderr.
        return dump(mode="json", exclude_unset=True, warnings=False)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(type(obj).__name__)


class EventEncoder:
    """Encodes items for one project; used by the worker and by strict-mode calls."""

    def __init__(self, project: str, *, max_event_bytes: int, fast: bool = True) -> None:
        self._project = project.encode()
        self._fast = fast
        self._key_prefix = project + "/"
        self._max_bytes = max_event_bytes
        self._second: tuple[int, bytes] = (-1, b"")  # one reference: safe across threads

    def _second_text(self, second: int) -> bytes:
        """The date and time of day of ``second`` (UTC), computed once a second
        (``datetime.fromtimestamp(...).isoformat()`` costs ~1.5 µs per event)."""
        cached, text = self._second
        if second != cached:
            formatted = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            text = formatted.encode()
            self._second = (second, text)
        return text

    def _iso(self, ts: float) -> bytes:
        """RFC 3339 UTC with microseconds."""
        second = int(ts)
        text = self._second_text(second)
        return b"%b.%06d+00:00" % (text, min(int((ts - second) * 1e6), 999_999))

    def serialize(
        self, etype: str, ts: float, body: dict[str, Any], stamp: tuple[str, ...]
    ) -> bytes:
        """The body's JSON, its ``stamp`` fields set to the emit time (the caller's part:
        ~1 µs for a typical log); raises ContractError naming an unserializable field."""
        # A copy of the exact size, not orjson's own buffer: see :meth:`item`.
        return memoryview(self._dumps(etype, ts, body, stamp)).tobytes()

    def item(self, etype: str, ts: float, body: dict[str, Any], stamp: tuple[str, ...]) -> Item:
        """What a call enqueues: :meth:`serialize`'s JSON behind a 9-byte header."""
        # One bytes object of the exact size waits in the queue, not orjson's own buffer:
        # orjson writes into 1 KB (too large for Python's small-object allocator, so from
        # malloc) and then shrinks it, so queued bodies left holes that the next call's 1 KB
        # did not fit, and ~0.56-1 call in 1 touched a fresh page of memory (a page fault,
        # ~2 µs: the tight loop's p50 went 5.9 -> 3.7 µs with an exact-size copy). The
        # header's concatenation is that copy.
        data = self._dumps(etype, ts, body, stamp)  # first: it refuses an unknown type
        return _ITEM_HEAD.pack(_TYPE_CODES[etype], ts) + data

    @staticmethod
    def pre_encoded_item(event: Encoded) -> Item:
        """The item of an event strict mode encoded at the call."""
        key, data = event
        return b"".join((_PRE_HEAD.pack(_PRE_CODE, len(key)), key, data))

    def finish_item(self, item: Item) -> Encoded:
        """:meth:`finish` for a queued :data:`Item`; raises ContractError naming fields."""
        code = item[0]
        if code == _PRE_CODE:
            key_end = _PRE_HEAD.size + _PRE_HEAD.unpack_from(item)[1]
            return item[_PRE_HEAD.size : key_end], item[key_end:]
        ts = _ITEM_HEAD.unpack_from(item)[1]
        return self.finish(_TYPE_NAMES[code], ts, item[_ITEM_HEAD.size :])

    def _dumps(self, etype: str, ts: float, body: dict[str, Any], stamp: tuple[str, ...]) -> bytes:
        """orjson's output for :meth:`serialize` (its buffer, not yet copied to size)."""
        if etype not in _VALIDATORS:
            raise ContractError([FieldError("type", f"unknown event type {etype!r}")])
        if stamp:
            text = self._iso(ts).decode()
            for name in stamp:
                body[name] = text
        try:
            data = orjson.dumps(body, default=to_jsonable)
        except TypeError:
            raise ContractError([_unserializable_field(body)]) from None
        if b"null" in data:  # orjson writes NaN and the infinities as null, silently
            where = _non_finite(body, "body")
            if where is not None:
                raise ContractError([FieldError(where, "Input should be a finite number")])
        return data

    def finish(self, etype: str, ts: float, body_bytes: bytes) -> Encoded:
        """The routing key and wire bytes of a serialized body (the worker's part);
        raises ContractError naming fields."""
        second = int(ts)
        data = _ENVELOPE % (
            _getrandbits(128) & _UUID4_CLEAR | _UUID4_SET,  # new_id's
            _TYPE_BYTES[etype],
            self._second_text(second),
            min(int((ts - second) * 1e6), 999_999),
            self._project,
            body_bytes,
        )
        identity = fast_identity(etype, body_bytes) if self._fast else None
        if identity is None:
            try:
                model = _VALIDATORS[etype].validate_json(body_bytes)
            except ValidationError:
                raise _contract_error(data) from None
            identity = _IDENTITY[etype](model)
        if len(data) > self._max_bytes:
            raise _contract_error(data, self._max_bytes)
        return (self._key_prefix + key_part(identity)).encode(), data

    def encode(
        self, etype: str, ts: float, body: dict[str, Any], stamp: tuple[str, ...]
    ) -> Encoded:
        """:meth:`serialize` then :meth:`finish`, in one call."""
        return self.finish(etype, ts, self.serialize(etype, ts, body, stamp))


def item_type(item: Item) -> str:
    """The event type of a queued item (``"event"`` for one strict mode encoded)."""
    code = item[0]
    return "event" if code == _PRE_CODE else _TYPE_NAMES[code]


class EncodedBatch(Sequence[Encoded]):
    """Encoded events as two parallel lists, routing keys and event bytes: how the worker
    and the transport hold a batch (see the module docstring: the collector visits two
    lists of untracked bytes, not a tuple per event). Indexing and iterating give
    ``(key, value)`` pairs, so it goes wherever a sequence of :data:`Encoded` does; a
    slice is a batch."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: list[bytes] | None = None, values: list[bytes] | None = None) -> None:
        self.keys: list[bytes] = [] if keys is None else keys
        self.values: list[bytes] = [] if values is None else values
        if len(self.keys) != len(self.values):
            raise ValueError("one key per value")

    @classmethod
    def of(cls, events: Iterable[Encoded]) -> EncodedBatch:
        """``events`` as a batch (itself if it is one)."""
        if isinstance(events, EncodedBatch):
            return events
        batch = cls()
        batch.extend(events)
        return batch

    def append(self, key: bytes, value: bytes) -> None:
        self.keys.append(key)
        self.values.append(value)

    def extend(self, events: Iterable[Encoded]) -> None:
        if isinstance(events, EncodedBatch):
            self.keys += events.keys
            self.values += events.values
            return
        for key, value in events:
            self.keys.append(key)
            self.values.append(value)

    def nbytes(self) -> int:
        """The events' bytes, keys excluded."""
        return sum(map(len, self.values))

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Encoded]:
        return zip(self.keys, self.values, strict=True)

    @overload
    def __getitem__(self, index: int) -> Encoded: ...
    @overload
    def __getitem__(self, index: slice) -> EncodedBatch: ...
    def __getitem__(self, index: int | slice) -> Encoded | EncodedBatch:
        if isinstance(index, slice):
            return EncodedBatch(self.keys[index], self.values[index])
        return self.keys[index], self.values[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EncodedBatch):
            return self.keys == other.keys and self.values == other.values
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"EncodedBatch({len(self)} events)"


def _contract_error(data: bytes, max_bytes: int | None = None) -> ContractError:
    """The consumer's own verdict on ``data`` (field paths such as ``body.prompt_tokens``)."""
    try:
        if max_bytes is None:
            parse_event(data)
        else:
            parse_event(data, max_bytes=max_bytes)
    except ContractError as exc:
        return exc
    return ContractError([FieldError("body", "rejected by the contract")])  # pragma: no cover


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinity in plain containers, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _non_finite(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _unserializable_field(body: dict[str, Any]) -> FieldError:
    """Name the first field orjson cannot serialize, with its type (never its value)."""
    for name, value in body.items():
        try:
            orjson.dumps(value, default=to_jsonable)
        except TypeError:
            kind = type(value).__name__
            return FieldError(f"body.{name}", f"is not JSON-serializable (a {kind})")
    return FieldError("body", "is not JSON-serializable")
