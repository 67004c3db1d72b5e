"""Output packing and dead-letter encoding (no broker needed)."""

from __future__ import annotations

import orjson

from processors.codec import RECORD_OVERHEAD_BYTES, encode_dead_letter, pack_outputs
from processors.outcome import DeadLetter, Origin, Output
from producers.contract import partition_for, unpack_record

PARTITIONS = 4


def _outputs(n: int, size: int = 10) -> list[Output]:
    return [Output(f"p/tr{i % 9}".encode(), {"i": i, "pad": "x" * size}) for i in range(n)]


def test_one_record_per_destination_partition_in_order():
    outputs = _outputs(50)
    packed = pack_outputs(outputs, PARTITIONS, 1024 * 1024)
    assert not packed.oversized
    assert len(packed.records) == len({p for p, _ in packed.records})
    for partition, value in packed.records:
        items = [orjson.loads(raw) for raw in unpack_record(value)]
        expected = [o.value for o in outputs if partition_for(o.key, PARTITIONS) == partition]
        assert items == expected


def test_records_are_split_under_the_size_limit():
    limit = RECORD_OVERHEAD_BYTES + 2000
    packed = pack_outputs(_outputs(60, size=200), PARTITIONS, limit)
    assert all(len(value) <= limit - RECORD_OVERHEAD_BYTES for _, value in packed.records)
    items = [orjson.loads(raw)["i"] for _, v in packed.records for raw in unpack_record(v)]
    assert sorted(items) == list(range(60))


def test_an_output_larger_than_any_record_is_returned_apart():
    big = Output(b"p/tr1", {"pad": "x" * 5000})
    packed = pack_outputs([big, *_outputs(3)], PARTITIONS, RECORD_OVERHEAD_BYTES + 4000)
    assert [output for output, _size in packed.oversized] == [big]
    assert sum(len(unpack_record(v)) for _, v in packed.records) == 3


def test_dead_letter_keeps_origin_and_cuts_a_huge_raw():
    origin = Origin("t.events", 3, 42)
    small = orjson.loads(encode_dead_letter(DeadLetter(origin, 1, "bad", b"[1]", "ev_1"), 10**6))
    assert small == {"topic": "t.events", "partition": 3, "offset": 42, "index": 1,
                     "event_id": "ev_1", "reason": "bad", "raw": "[1]"}  # fmt: skip
    raw = b"\x01" * 400_000  # escapes to 6 bytes each in JSON
    value = encode_dead_letter(DeadLetter(origin, -1, "not JSON", raw), 1024 * 1024)
    cut = orjson.loads(value)
    assert len(value) < 1024 * 1024 and cut["raw_truncated"] and cut["raw_bytes"] == 400_000
