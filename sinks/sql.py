"""All the SQL the sink runs, generated once from the table specs.

Each table is written per batch by binary ``COPY`` of its rows into a temporary staging
table of the spec's columns (``staging_ddl``: made once per connection, emptied at every
commit), then one ``INSERT … SELECT … FROM`` the staging table ``ON CONFLICT … DO UPDATE``
(``staged_upsert_sql``). The same upsert also runs over one array per column
(``INSERT … SELECT … FROM unnest($1::text[], …)``, ``upsert_sql``): the path a batch falls
back to when PostgreSQL refuses one of its rows, and the one a row is retried alone on.
Both select the same expressions from columns of the same types, so a value is cast and
stored the same way by either. The upsert is guarded by the row's version: an older state
never overwrites a newer one, and writing the same state again changes nothing (not even
``updated_at``), so redelivered batches are no-ops. A payload column is set only when the
output carries it (its bit in ``payload_carried``), and a ``save=false`` log's payload
columns are cleared.
"""

from __future__ import annotations

import hashlib
from functools import cache

from .tables import TableSpec

__all__ = [
    "DEAD_LETTERS",
    "LOCK_SESSIONS",
    "PROMPTS",
    "PROMPT_VERSIONS",
    "REMOVE_FEEDBACK",
    "REMOVE_LOGS",
    "REMOVE_TARGET_FEEDBACK",
    "SESSION_SPANS",
    "param_type",
    "remove_sql",
    "staged_upsert_sql",
    "staging_ddl",
    "staging_table",
    "update_clause",
    "upsert_sql",
]

# unnest() cannot take arrays of arrays of uneven length, and asyncpg wants Python objects
# of the exact type for timestamps: such columns travel as text and are cast in SQL.
_AS_TEXT = {"jsonb", "timestamptz", "text[]"}


def _q(name: str) -> str:
    return f'"{name}"'


def param_type(pg_type: str) -> str:
    return "text" if pg_type in _AS_TEXT else pg_type


def _select(name: str, pg_type: str) -> str:
    column = f"u.{_q(name)}"
    if pg_type == "text[]":  # carried as a JSON array
        return (
            f"CASE WHEN {column} IS NULL THEN NULL "
            f"ELSE ARRAY(SELECT jsonb_array_elements_text({column}::jsonb)) END"
        )
    if pg_type in _AS_TEXT:
        return f"{column}::{pg_type}"
    return column


def update_clause(spec: TableSpec, name: str) -> str:
    """The ``SET`` of one column in the upsert (payload columns only when carried)."""
    column = _q(name)
    if name not in spec.payload:
        return f"{column} = EXCLUDED.{column}"
    bit = 1 << spec.payload.index(name)
    cleared = "WHEN NOT EXCLUDED.save THEN NULL " if "save" in spec.names else ""
    return (
        f"{column} = CASE {cleared}WHEN EXCLUDED.payload_carried & {bit} <> 0 "
        f"THEN EXCLUDED.{column} ELSE t.{column} END"
    )


def _upsert(spec: TableSpec, source: str) -> str:
    """The version-guarded upsert of ``spec`` from ``source``: a row set aliased ``u``
    whose columns are the spec's, in ``param_type`` types."""
    names = spec.names
    columns = ", ".join(_q(n) for n in names)
    selects = ", ".join(_select(name, pg_type) for name, pg_type, _ in spec.columns)
    keys = set(spec.conflict)
    updates = ", ".join(update_clause(spec, n) for n in names if n not in keys | spec.keep_first)
    target = ", ".join(_q(c) for c in spec.conflict)
    if spec.conflict_where:
        target += f") WHERE ({spec.conflict_where}"
    version = _q(spec.version_column)
    return (
        f"INSERT INTO {_q(spec.table)} AS t ({columns})\n"
        f"SELECT {selects}\nFROM {source}\n"
        f"ON CONFLICT ({target}) DO UPDATE SET {updates}, updated_at = now()\n"
        f"WHERE t.{version} < EXCLUDED.{version}"
    )


@cache
def upsert_sql(spec: TableSpec) -> str:
    """The upsert binding one array per column (``$1`` … in column order)."""
    params = ", ".join(
        f"${i}::{param_type(pg_type)}[]" for i, (_, pg_type, _) in enumerate(spec.columns, 1)
    )
    columns = ", ".join(_q(n) for n in spec.names)
    return _upsert(spec, f"unnest({params}) AS u({columns})")


_STAGING: dict[str, TableSpec] = {}  # staging table name -> its spec


@cache
def staging_table(spec: TableSpec) -> str:
    """The name of ``spec``'s staging table (in ``pg_temp``), named after its upsert: one
    per spec, so that two specs of one table (a trace and its rollup, even two specs of the
    same upsert) never share one in a batch."""
    digest = hashlib.sha1(upsert_sql(spec).encode()).hexdigest()[:10]
    name = base = f"lf_stage_{spec.table[:40]}_{digest}"
    while _STAGING.setdefault(name, spec) != spec:
        name = f"{base}_{len(_STAGING)}"
    return name


@cache
def staging_ddl(spec: TableSpec) -> str:
    """A session's staging table of ``spec``: its columns in ``param_type`` types (what the
    unnest arrays carry), no constraints, emptied at every commit."""
    columns = ", ".join(f"{_q(n)} {param_type(t)}" for n, t, _ in spec.columns)
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {_q(staging_table(spec))} ({columns}) "
        "ON COMMIT DELETE ROWS"
    )


@cache
def staged_upsert_sql(spec: TableSpec) -> str:
    """The upsert of the rows copied into ``spec``'s staging table."""
    return _upsert(spec, f"pg_temp.{_q(staging_table(spec))} AS u")


# Removals, like upserts, only act on an older row (a redelivered empty rollup of a group
# that has members again changes nothing). Deleted logs go with their feedback; a log is
# matched by id or by reference id (its row may be stored under another create's id, see
# sinks.tables.LOGS_BY_REFERENCE).
REMOVE_LOGS = """
DELETE FROM logs t
USING unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(project, id, ref, version)
WHERE t.project = u.project AND (t.id = u.id OR t.reference_id = u.ref) AND t.version < u.version
"""

REMOVE_FEEDBACK = """
DELETE FROM feedback t USING unnest($1::text[], $2::text[], $3::text[]) AS u(project, id, ref)
WHERE t.project = u.project AND (t.log_id = u.id OR t.reference_id = u.ref)
"""


# The feedback of a deleted Maxim trace (its id) or session (its own node's id).
REMOVE_TARGET_FEEDBACK = """
DELETE FROM feedback t
USING unnest($1::text[], $2::text[], $3::text[]) AS u(project, trace_id, session_id)
WHERE t.project = u.project AND (t.trace_id = u.trace_id OR t.session_id = u.session_id)
"""


@cache
def remove_sql(spec: TableSpec) -> str:
    """Delete rows by their key (``(project, id)``, ``(project, kind, id)``: one array per
    column, then the versions) older than the removal (logs: ``REMOVE_LOGS``)."""
    keys = spec.conflict
    params = ", ".join(f"${i}::text[]" for i in range(1, len(keys) + 1))
    columns = ", ".join(_q(k) for k in keys)
    match = " AND ".join(f"t.{_q(k)} = u.{_q(k)}" for k in keys)
    return (
        f"DELETE FROM {_q(spec.table)} t"
        f" USING unnest({params}, ${len(keys) + 1}::bigint[]) AS u({columns}, version)"
        f" WHERE {match} AND t.{_q(spec.version_column)} < u.version"
    )


DEAD_LETTERS = """
INSERT INTO dead_letters (topic, "partition", "offset", event_index, event_id, reason, raw)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[], $5::text[], $6::text[],
                     $7::bytea[])
ON CONFLICT (topic, "partition", "offset", event_index) DO NOTHING
"""

# A prompt and its versions are content-addressed: the first write is the only one. A path
# that another prompt id already holds (named by id once, by path only another time) keeps
# its first prompt: DO NOTHING on any unique index, and a version is recorded only under a
# prompt row that exists, so that neither statement can fail (and stall) the batch.
PROMPTS = """
INSERT INTO prompts (project, id, path)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING
"""

PROMPT_VERSIONS = """
INSERT INTO prompt_versions (project, id, prompt_id, model, provider, template, parameters,
                             tools, environment)
SELECT u.project, u.id, u.prompt_id, u.model, u.provider, u.template::jsonb,
       u.parameters::jsonb, u.tools::jsonb, u.environment
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[])
     AS u(project, id, prompt_id, model, provider, template, parameters, tools, environment)
WHERE EXISTS (SELECT 1 FROM prompts p WHERE p.project = u.project AND p.id = u.prompt_id)
ON CONFLICT (project, id) DO NOTHING
"""


# A session's time span is the span of the traces it holds now. The stream keeps only a
# session's totals (its traces are detached members: a session of 50,000 traces is a small
# state), which cannot say how far a span shrinks when a trace moves to another session, so
# the sink computes it from the traces table after every batch that wrote a session or one
# of its traces. The
# rows are locked first (sorted: no deadlock between sinks) and the span computed by the
# next statement, whose snapshot then includes every batch committed before the lock was
# granted: whichever recompute runs last saw every trace of the session. A session none of
# whose traces belong to it any more (they all moved to a smaller session id) has no span.
LOCK_SESSIONS = """
SELECT 1 FROM sessions s
JOIN unnest($1::text[], $2::text[]) AS k(project, id) ON s.project = k.project AND s.id = k.id
ORDER BY s.project, s.id
FOR UPDATE OF s
"""

SESSION_SPANS = """
UPDATE sessions s SET first_seen = x.first_seen, last_seen = x.last_seen, updated_at = now()
FROM (
    SELECT k.project, k.id, min(t.first_seen) AS first_seen, max(t.last_seen) AS last_seen
    FROM unnest($1::text[], $2::text[]) AS k(project, id)
    LEFT JOIN traces t ON t.project = k.project AND t.rollup_session_id = k.id
    GROUP BY k.project, k.id
) x
WHERE s.project = x.project AND s.id = x.id
  AND (s.first_seen IS DISTINCT FROM x.first_seen OR s.last_seen IS DISTINCT FROM x.last_seen)
"""
