"""verify's pure parts: the order-independent checksum and the column differences."""

from __future__ import annotations

import random

from logflume.history.verify import (
    PAYLOAD_COLUMNS,
    TABLES,
    checksum,
    column_differences,
    fingerprint,
)

PAIRS = [(f'["acme", "id-{i}"]', f"{i * 7919:032x}") for i in range(500)]


def test_checksum_does_not_depend_on_row_order() -> None:
    shuffled = PAIRS[:]
    random.Random(1).shuffle(shuffled)
    assert checksum(shuffled) == checksum(PAIRS)
    assert checksum(reversed(PAIRS)) == checksum(PAIRS)
    assert checksum(PAIRS)[0] == 500


def test_checksum_sees_a_changed_missing_extra_or_duplicated_row() -> None:
    base = checksum(PAIRS)
    changed = [*PAIRS[:-1], (PAIRS[-1][0], "0" * 32)]
    moved = [*PAIRS[:-1], ('["acme", "other"]', PAIRS[-1][1])]  # same content, other key
    assert checksum(changed) != base
    assert checksum(moved) != base
    assert checksum(PAIRS[:-1]) != base
    assert checksum([*PAIRS, PAIRS[0]]) != base  # a multiset: a duplicate counts
    # and two rows swapping their contents is a change, although the digests are the same
    swapped = [(PAIRS[0][0], PAIRS[1][1]), (PAIRS[1][0], PAIRS[0][1]), *PAIRS[2:]]
    assert checksum(swapped)[1] != base[1]


def test_empty_tables_are_equal() -> None:
    assert checksum([]) == (0, "0" * 32)


def test_column_differences() -> None:
    a = {"id": "x", "tokens": 5, "cost": None, "meta": {"k": 1}}
    b = {"id": "x", "tokens": 6, "cost": None, "meta": {"k": 1}}
    assert column_differences(a, b) == {"tokens": (5, 6)}
    assert column_differences(a, a) == {}
    assert column_differences(a, None) == {k: (v, None) for k, v in a.items() if v is not None}


def test_payload_columns_differ_by_fingerprint_never_by_value() -> None:
    secret_a, secret_b = "my card is 4111 1111", "my card is 4111 2222"
    a = {"id": "x", "output": secret_a, "messages": [{"content": secret_a}], "tokens": 5}
    b = {"id": "x", "output": secret_b, "messages": [{"content": secret_a}], "tokens": 6}
    differences = column_differences(a, b, PAYLOAD_COLUMNS["logs"])
    assert set(differences) == {"output", "tokens"}
    assert differences["tokens"] == (5, 6)
    shown_a, shown_b = differences["output"]
    assert secret_a not in str(differences) and secret_b not in str(differences)
    assert shown_a != shown_b  # still tells which side differs
    assert shown_a == fingerprint(secret_a)  # the same value, the same fingerprint
    assert column_differences(a, None, PAYLOAD_COLUMNS["logs"])["output"] == (shown_a, None)


def test_every_payload_column_of_the_sink_is_fingerprinted() -> None:
    assert {"messages", "output", "provider_request"} <= PAYLOAD_COLUMNS["logs"]
    assert {"messages", "result"} <= PAYLOAD_COLUMNS["generations"]
    assert {"args", "documents"} <= PAYLOAD_COLUMNS["trace_nodes"]
    assert PAYLOAD_COLUMNS["dead_letters"] == {"raw"}
    assert set(PAYLOAD_COLUMNS) <= set(TABLES)


def test_arrival_time_columns_are_the_only_ones_left_out() -> None:
    ignored = {(table, column) for table, columns in TABLES.items() for column in columns}
    assert ("logs", "created_at") not in ignored  # the log's own creation time is content
    assert ("logs", "version") not in ignored
    # payload_carried: which payload columns a row's last write carried, which depends on
    # how the writes were batched (a replay batches differently), not on the content.
    assert all(
        column in {"updated_at", "stored_at", "created_at", "received_at", "id", "payload_carried"}
        for _, column in ignored
    )
