-- Columns the sinks need: rollup totals beside each entity (guarded by their own
-- rollup_version, since a trace's own fields and its totals come from different stages),
-- partial markers, and per-prompt-version statistics.

ALTER TABLE logs
    ADD COLUMN cost    numeric(20, 10),
    ADD COLUMN prompt  jsonb;

ALTER TABLE feedback
    ADD COLUMN version bigint NOT NULL DEFAULT 0;

ALTER TABLE traces
    ADD COLUMN is_partial         boolean NOT NULL DEFAULT false,
    ADD COLUMN unpriced_count     integer NOT NULL DEFAULT 0,
    ADD COLUMN counts             jsonb,
    ADD COLUMN first_seen         timestamptz,
    ADD COLUMN last_seen          timestamptz,
    ADD COLUMN duration           double precision,
    ADD COLUMN rollup_session_id  text,
    ADD COLUMN rollup_version     bigint NOT NULL DEFAULT 0;
CREATE INDEX traces_rollup_session ON traces (project, rollup_session_id)
    WHERE rollup_session_id IS NOT NULL;

ALTER TABLE spans
    ADD COLUMN is_partial boolean NOT NULL DEFAULT false;

ALTER TABLE generations
    ADD COLUMN status     text,
    ADD COLUMN is_partial boolean NOT NULL DEFAULT false;

ALTER TABLE sessions
    ADD COLUMN cached_tokens     bigint  NOT NULL DEFAULT 0,
    ADD COLUMN reasoning_tokens  bigint  NOT NULL DEFAULT 0,
    ADD COLUMN total_tokens      bigint  NOT NULL DEFAULT 0,
    ADD COLUMN unpriced_count    integer NOT NULL DEFAULT 0,
    ADD COLUMN error_count       integer NOT NULL DEFAULT 0,
    ADD COLUMN counts            jsonb,
    ADD COLUMN rollup_version    bigint  NOT NULL DEFAULT 0;

CREATE TABLE prompt_version_stats (
    project           text        NOT NULL,
    id                text        NOT NULL,  -- the prompt version id
    prompt_tokens     bigint      NOT NULL DEFAULT 0,
    output_tokens     bigint      NOT NULL DEFAULT 0,
    cached_tokens     bigint      NOT NULL DEFAULT 0,
    reasoning_tokens  bigint      NOT NULL DEFAULT 0,
    total_tokens      bigint      NOT NULL DEFAULT 0,
    cost              numeric(20, 10),
    unpriced_count    integer     NOT NULL DEFAULT 0,
    error_count       integer     NOT NULL DEFAULT 0,
    counts            jsonb,
    first_seen        timestamptz,
    last_seen         timestamptz,
    rollup_version    bigint      NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);

-- Counts by kind now live in `counts` (jsonb), filled from the rollups.
ALTER TABLE traces DROP COLUMN span_count, DROP COLUMN generation_count, DROP COLUMN log_count;
ALTER TABLE sessions DROP COLUMN log_count, DROP COLUMN trace_count, DROP COLUMN reference_id;
