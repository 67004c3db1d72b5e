"""How events are routed and packed into Kafka records.

Routing: every event of one entity carries the same routing key, ``project/identity``,
where identity is the log's reference_id when it has one, else the entity's id, written
as a key part (``producers.contract.keys``: a project never holds ``/`` and the id's own
``/`` is encoded, so keys of different projects or ids never collide).

Packing (architecture sections 3-4): one Kafka record carries a JSON array of events that all
route to the record's partition, computed with Kafka's own murmur2 partitioner on each
event's routing key. The per-record cost of the stream processor is then paid once per
batch, and an entity's events still always meet on one partition. A record may also hold
a single envelope object (what other languages and the gateway may send).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import orjson

from .events import (
    DeleteEvent,
    Event,
    FeedbackEvent,
    GenerationErrorEvent,
    GenerationEvent,
    GenerationResultEvent,
    LogEvent,
    LogUpdateEvent,
    NodeEvent,
    SpanEvent,
    TraceEvent,
)
from .keys import project_key

__all__ = [
    "entity_identity",
    "murmur2",
    "pack_record",
    "partition_for",
    "routing_key",
    "unpack_record",
]


def entity_identity(event: Event) -> str:
    """The id of the entity an event belongs to (reference_id first for logs)."""
    body = event.body
    match event:
        case LogEvent() | LogUpdateEvent() | DeleteEvent():
            return body.reference_id or body.id  # type: ignore[union-attr,return-value]
        case FeedbackEvent():
            return body.target  # type: ignore[union-attr,no-any-return]
        case GenerationResultEvent() | GenerationErrorEvent():
            return body.generation_id  # type: ignore[union-attr]
        case TraceEvent() | SpanEvent() | GenerationEvent() | NodeEvent():
            return body.id  # type: ignore[union-attr]
    raise TypeError(f"not an event: {type(event).__name__}")


def routing_key(event: Event) -> bytes:
    """The Kafka key that places every event of one entity on one partition."""
    return project_key(event.project, entity_identity(event)).encode()


try:  # a C murmur2 (~0.2 µs a key); the pure-Python one below costs ~4 µs
    from murmurhash2 import murmurhash2 as _c_murmur2
except ImportError:  # pragma: no cover - depends on the environment
    _c_murmur2 = None

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def _py_murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``Utils.murmur2``), a word at a time."""
    length = len(data)
    h = _SEED ^ length
    for k in struct.unpack_from(f"<{length >> 2}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra:
        tail = length & ~3
        if extra >= 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 of a key (unsigned 32 bits), as the Java client computes it."""
    return _c_murmur2(key, _SEED) if _c_murmur2 is not None else _py_murmur2(key)


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client computes it)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def pack_record(encoded_events: Iterable[bytes]) -> bytes:
    """One record value from already-encoded events (see ``encode_event``)."""
    return b"[" + b",".join(encoded_events) + b"]"


def unpack_record(value: bytes) -> list[bytes]:
    """The encoded events of one record value, each to be validated on its own so that one
    bad event is dead-lettered alone. Raises ``ValueError`` if the value is not JSON."""
    decoded = orjson.loads(value)
    items = decoded if isinstance(decoded, list) else [decoded]
    return [orjson.dumps(item) for item in items]
