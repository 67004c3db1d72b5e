"""Which stage output goes to which table, and how a value becomes a row.

A :class:`TableSpec` names a table's columns with their PostgreSQL types and where each
value comes from in a canonical entity or rollup. The SQL (``sinks.sql``) is generated
from the specs once; a row is a tuple in column order.

Payload columns (``TableSpec.payload``) are written only when the entity output carries
them (``producers.contract.outputs``): the row's ``payload_carried`` bitmask says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from producers.contract import CARRIED, NODE_KINDS

__all__ = ["NODES", "SPECS", "TRACES", "TableSpec", "removes", "spec_for"]

Extract = Callable[[dict[str, Any]], Any]
Row = Callable[[dict[str, Any]], tuple[Any, ...]]


def _json_text(item: Any) -> str | None:
    return None if item is None else orjson.dumps(item).decode()


class _Field:
    """A column read straight off the output: its field ``name``, as JSON text for a
    ``jsonb`` (or ``text[]``) column. An extract the row function inlines (see ``_row``)."""

    __slots__ = ("as_json", "name")

    def __init__(self, name: str, *, as_json: bool = False) -> None:
        self.name, self.as_json = name, as_json

    def __call__(self, value: dict[str, Any]) -> Any:
        item = value.get(self.name)
        return _json_text(item) if self.as_json else item


def _json(name: str) -> Extract:
    return _Field(name, as_json=True)


def _get(name: str) -> Extract:
    return _Field(name)


def _int(name: str) -> Extract:
    return lambda value: None if value.get(name) is None else int(value[name])


def _row(columns: tuple[tuple[str, str, Extract], ...]) -> Row:
    """One function building a spec's rows in a single tuple expression, the plain fields
    inlined as ``value.get(name)``: a sink or a replay builds a row for every value it
    writes, and calling each column's extract in turn cost ~3x more (``TableSpec.row``)."""
    namespace: dict[str, Any] = {"json_text": _json_text}
    parts = []
    for i, (_, _, extract) in enumerate(columns):
        if isinstance(extract, _Field):
            part = f"get({extract.name!r})"
            parts.append(f"json_text({part})" if extract.as_json else part)
        else:
            namespace[f"extract_{i}"] = extract
            parts.append(f"extract_{i}(value)")
    source = f"def row(value):\n    get = value.get\n    return ({', '.join(parts)},)\n"
    exec(source, namespace)  # names and extracts come from this module's specs only
    return namespace["row"]  # type: ignore[no-any-return]


# Identity equality and hash (eq=False): a spec is a module constant, used as a dict key
# for every value a sink batches; hashing its columns each time was a tenth of the sink's
# CPU.
@dataclass(frozen=True, slots=True, eq=False)
class TableSpec:
    """One table the sink upserts: ``columns`` are (name, type, extract)."""

    table: str
    columns: tuple[tuple[str, str, Extract], ...]
    version_column: str = "version"
    # Columns that only the first write sets (an upsert never changes them).
    keep_first: frozenset[str] = frozenset()
    # The unique index a row is upserted on (and the predicate of a partial index).
    conflict: tuple[str, ...] = ("project", "id")
    conflict_where: str = ""
    # Columns written only when the output carries them; the last column is then the
    # ``payload_carried`` bitmask (bit i = payload[i]).
    payload: tuple[str, ...] = ()
    row: Row = field(init=False, repr=False)  # value -> its row, in column order

    def __post_init__(self) -> None:
        object.__setattr__(self, "row", _row(self.columns))

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.columns]

    def key(self, value: dict[str, Any]) -> tuple[str, ...]:
        return tuple(value[column] for column in self.conflict)


def _carried_mask(payload: tuple[str, ...]) -> Extract:
    def extract(value: dict[str, Any]) -> int:
        carried = value.get(CARRIED)
        if carried is None:  # an output written before payloads left the state: it
            carried = [name for name in payload if name in value]  # carries what it has
        return sum(1 << i for i, name in enumerate(payload) if name in carried)

    return extract


def _with_payload(spec: TableSpec, *payload: str) -> TableSpec:
    """``spec`` with ``payload`` columns written only when carried (and the bitmask)."""
    assert set(payload) <= set(spec.names), payload
    mask = ("payload_carried", "integer", _carried_mask(payload))
    return replace(spec, columns=(*spec.columns, mask), payload=payload)


def _cols(
    *specs: tuple[str, str] | tuple[str, str, Extract],
) -> tuple[tuple[str, str, Extract], ...]:
    out = []
    for spec in specs:
        name, pg_type = spec[0], spec[1]
        extract = spec[2] if len(spec) == 3 else (_json(name) if pg_type == "jsonb" else _get(name))
        out.append((name, pg_type, extract))
    return tuple(out)


_TOTALS = _cols(
    ("prompt_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("cached_tokens", "bigint"),
    ("reasoning_tokens", "bigint"),
    ("total_tokens", "bigint", _int("tokens")),
    ("cost", "float8"),
    ("unpriced_count", "integer"),
    ("error_count", "integer"),
    ("counts", "jsonb"),
    ("first_seen", "timestamptz", _get("start_time")),
    ("last_seen", "timestamptz", _get("end_time")),
    ("rollup_version", "bigint", _get("version")),
)

LOGS = TableSpec(
    "logs",
    _cols(
        ("project", "text"),
        ("id", "text"),
        ("reference_id", "text"),
        ("prompt_id", "text"),
        ("version_id", "text"),
        ("path", "text"),
        ("environment", "text"),
        ("session_id", "text"),
        ("session_reference_id", "text"),
        ("parent_id", "text"),
        ("parent_reference_id", "text"),
        ("trace_id", "text"),
        ("trace_parent_log_id", "text"),
        ("source_datapoint_id", "text"),
        ("evaluation_id", "text"),
        ("config_id", "text"),
        ("batch_ids", "text[]", _json("batches")),
        ("save", "boolean"),
        ("messages", "jsonb"),
        ("inputs", "jsonb"),
        ("output", "text"),
        ("output_message", "jsonb"),
        ("raw_output", "text"),
        ("tools", "jsonb"),
        ("tool_choice", "jsonb"),
        ("provider_request", "jsonb"),
        ("provider_response", "jsonb"),
        ("stdout", "text"),
        ("error", "text"),
        ("finish_reason", "text"),
        ("judgment", "jsonb"),
        ("prompt_tokens", "bigint"),
        ("output_tokens", "bigint"),
        ("cached_tokens", "bigint"),
        ("reasoning_tokens", "bigint"),
        ("tokens", "bigint"),
        ("prompt_cost", "float8"),
        ("output_cost", "float8"),
        ("cost", "float8"),
        ("cost_source", "text"),
        ("provider_latency", "float8"),
        ("duration", "float8"),
        ("start_time", "timestamptz"),
        ("end_time", "timestamptz"),
        ("metadata", "jsonb"),
        ("source", "text"),
        ("user", "text"),
        ("created_at", "timestamptz"),
        ("prompt", "jsonb"),
        ("log_kind", "text", lambda value: value.get("log_kind") or "prompt"),
        ("log_status", "text"),
        ("marked_completed", "boolean"),
        ("file", "jsonb"),
        ("version", "bigint"),
    ),
    keep_first=frozenset({"created_at"}),
)
LOGS = _with_payload(
    LOGS,
    "messages",
    "inputs",
    "output",
    "output_message",
    "raw_output",
    "tools",
    "provider_request",
    "provider_response",
    "stdout",
)

FEEDBACK = TableSpec(
    "feedback",
    _cols(
        ("project", "text"),
        ("id", "text"),
        ("log_id", "text"),
        ("reference_id", "text"),
        ("trace_id", "text"),
        ("session_id", "text"),
        ("value", "jsonb"),
        ("comment", "text"),
        ("source", "text"),
        ("user", "text"),
        ("metadata", "jsonb"),
        ("created_at", "timestamptz"),
        ("version", "bigint"),
    ),
)

TRACES = TableSpec(
    "traces",
    _cols(
        ("project", "text"),
        ("id", "text"),
        ("name", "text"),
        ("session_id", "text"),
        ("tags", "jsonb"),
        ("metadata", "jsonb"),
        ("metrics", "jsonb"),
        ("input", "text"),
        ("output", "text"),
        ("start_time", "timestamptz"),
        ("end_time", "timestamptz"),
        ("is_partial", "boolean", _get("partial")),
        ("version", "bigint"),
    ),
)
TRACES = _with_payload(TRACES, "input", "output")

TRACE_ROLLUPS = TableSpec(
    "traces",
    (
        *_cols(("project", "text"), ("id", "text"), ("status", "text")),
        *_TOTALS,
        *_cols(
            ("duration", "float8"),
            ("rollup_session_id", "text", _get("session_id")),
            ("latencies", "jsonb"),
        ),
    ),
    version_column="rollup_version",
)

SPANS = TableSpec(
    "spans",
    _cols(
        ("project", "text"),
        ("id", "text"),
        ("trace_id", "text"),
        ("parent_id", "text"),
        ("name", "text"),
        ("tags", "jsonb"),
        ("metadata", "jsonb"),
        ("metrics", "jsonb"),
        ("input", "text"),
        ("start_time", "timestamptz"),
        ("end_time", "timestamptz"),
        ("is_partial", "boolean", _get("partial")),
        ("version", "bigint"),
    ),
)
SPANS = _with_payload(SPANS, "input")

GENERATIONS = TableSpec(
    "generations",
    _cols(
        ("project", "text"),
        ("id", "text"),
        ("trace_id", "text"),
        ("parent_id", "text"),
        ("name", "text"),
        ("provider", "text"),
        ("model", "text"),
        ("model_parameters", "jsonb"),
        ("messages", "jsonb"),
        ("added_messages", "jsonb"),
        ("result", "jsonb"),
        ("error", "jsonb"),
        ("tags", "jsonb"),
        ("metadata", "jsonb"),
        ("metrics", "jsonb"),
        ("caller_cost", "jsonb"),
        ("status", "text"),
        ("prompt_tokens", "bigint"),
        ("completion_tokens", "bigint", _int("output_tokens")),
        ("cached_tokens", "bigint"),
        ("reasoning_tokens", "bigint"),
        ("total_tokens", "bigint", _int("tokens")),
        ("cost", "float8"),
        ("cost_source", "text"),
        ("start_time", "timestamptz"),
        ("end_time", "timestamptz"),
        ("is_partial", "boolean", _get("partial")),
        ("version", "bigint"),
    ),
)

GENERATIONS = _with_payload(GENERATIONS, "messages", "result")

# Tool calls, retrievals, events, errors and attachments of a trace, and a session's own
# node with its events and attachments: one table, the kind's fields in their columns.
NODES = TableSpec(
    "trace_nodes",
    _cols(
        ("project", "text"),
        ("kind", "text"),
        ("id", "text"),
        ("trace_id", "text"),
        ("session_id", "text"),
        ("parent_id", "text"),
        ("name", "text"),
        ("description", "text"),
        ("tags", "jsonb"),
        ("metadata", "jsonb"),
        ("metrics", "jsonb"),
        ("args", "text"),
        ("result", "text"),
        ("error", "jsonb"),
        ("query", "text"),
        ("documents", "jsonb"),
        ("attachment", "jsonb"),
        ("start_time", "timestamptz"),
        ("end_time", "timestamptz"),
        ("is_partial", "boolean", _get("partial")),
        ("version", "bigint"),
    ),
    conflict=("project", "kind", "id"),
)
NODES = _with_payload(NODES, "args", "result", "query", "documents")

SESSIONS = TableSpec(
    "sessions",
    (*_cols(("project", "text"), ("id", "text")), *_TOTALS),
    version_column="rollup_version",
    # A session's span is computed from its stored traces (sql.SESSION_SPANS), not written
    # from its rollup (which carries none).
    keep_first=frozenset({"first_seen", "last_seen"}),
)

PROMPT_VERSION_ROLLUPS = TableSpec(
    "prompt_version_stats",
    (*_cols(("project", "text"), ("id", "text")), *_TOTALS),
    version_column="rollup_version",
)

# Stage outputs by (topic role, kind).
SPECS: dict[tuple[str, str], TableSpec] = {
    ("entities", "log"): LOGS,
    ("entities", "feedback"): FEEDBACK,
    ("entities", "trace"): TRACES,
    ("entities", "span"): SPANS,
    ("entities", "generation"): GENERATIONS,
    **{("entities", kind): NODES for kind in NODE_KINDS},
    ("rollups", "trace"): TRACE_ROLLUPS,
    ("rollups", "session"): SESSIONS,
    ("rollups", "prompt_version"): PROMPT_VERSION_ROLLUPS,
}


# A log with a reference_id is that reference's one datapoint: it is upserted on
# (project, reference_id), so that if the merge settles on another create's id (an earlier
# create arriving late), the stored row takes that id instead of clashing with itself.
LOGS_BY_REFERENCE = replace(
    LOGS, conflict=("project", "reference_id"), conflict_where="reference_id IS NOT NULL"
)


def spec_for(role: str, value: dict[str, Any]) -> TableSpec | None:
    """The table spec of a stage output, by the topic's role and the value's kind."""
    spec = SPECS.get((role, str(value.get("kind"))))
    if spec is LOGS and value.get("reference_id"):
        return LOGS_BY_REFERENCE
    return spec


def removes(spec: TableSpec, value: dict[str, Any]) -> bool:
    """The stage output removes its row instead of writing it: a deleted entity, or a
    group (trace, session, prompt version) none of whose members is left."""
    if spec.version_column == "rollup_version":
        return not value.get("counts")
    return value.get("deleted") is True
