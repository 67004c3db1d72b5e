"""Bytes at the processors' Kafka edges: table values, output records, dead letters.

Table values are plain JSON dicts encoded with orjson (:class:`processors.app.OrjsonCodec`,
the Faust side; this module imports no Faust). Outputs leave in batch records:
:func:`pack_outputs` groups them by destination partition (Kafka's murmur2 partitioner on
each output's key, as in the wire contract) and packs one record per partition, split so
that no record exceeds the record size limit. An output too large for any record cannot be
sent and is returned apart, to be dead-lettered. Dead-letter records are encoded by
:func:`producers.contract.deadletters.encode_dead_letter` (re-exported here), which the
gateway shares without importing Faust.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from processors.outcome import RECORD_OVERHEAD_BYTES, Output, encode_dead_letter
from producers.contract import pack_record, partition_for

__all__ = [
    "RECORD_OVERHEAD_BYTES",
    "PackedOutputs",
    "encode_dead_letter",
    "pack_outputs",
]


@dataclass(slots=True)
class PackedOutputs:
    """Records to send, as ``(partition, value)``, and the outputs that fit in no record."""

    records: list[tuple[int, bytes]] = field(default_factory=list)
    oversized: list[tuple[Output, int]] = field(default_factory=list)  # (output, its size)


def pack_outputs(outputs: Iterable[Output], partitions: int, max_bytes: int) -> PackedOutputs:
    """One batch record per destination partition, split when it would exceed ``max_bytes``.

    Order is kept within a partition, which is all Kafka orders anyway.
    """
    budget = max_bytes - RECORD_OVERHEAD_BYTES
    grouped: dict[int, list[bytes]] = {}
    packed = PackedOutputs()
    for output in outputs:
        encoded = orjson.dumps(output.value)
        if len(encoded) + 2 > budget:
            packed.oversized.append((output, len(encoded)))
            continue
        grouped.setdefault(partition_for(output.key, partitions), []).append(encoded)
    for partition, encoded_values in grouped.items():
        chunk: list[bytes] = []
        size = 2  # the brackets
        for encoded in encoded_values:
            if chunk and size + len(encoded) + 1 > budget:
                packed.records.append((partition, pack_record(chunk)))
                chunk, size = [], 2
            chunk.append(encoded)
            size += len(encoded) + 1
        if chunk:
            packed.records.append((partition, pack_record(chunk)))
    return packed
