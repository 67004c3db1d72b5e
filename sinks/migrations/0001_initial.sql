-- logflume first schema: logs, traces (with spans and generations), sessions, prompts and
-- prompt versions, feedback, dead letters. Every row belongs to a project; ids are unique
-- per project. `version` is the sink's guard: a row is only overwritten by a state that
-- has merged more events (an older state never wins over a newer one).

CREATE TABLE prompts (
    project      text        NOT NULL,
    id           text        NOT NULL,
    path         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);
CREATE UNIQUE INDEX prompts_path ON prompts (project, path) WHERE path IS NOT NULL;

CREATE TABLE prompt_versions (
    project      text        NOT NULL,
    id           text        NOT NULL,  -- deterministic hash of the prompt's content
    prompt_id    text        NOT NULL,
    model        text,
    provider     text,
    template     jsonb,
    parameters   jsonb,
    tools        jsonb,
    environment  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id),
    FOREIGN KEY (project, prompt_id) REFERENCES prompts (project, id)
);

CREATE TABLE sessions (
    project           text        NOT NULL,
    id                text        NOT NULL,
    reference_id      text,
    log_count         bigint      NOT NULL DEFAULT 0,
    trace_count       bigint      NOT NULL DEFAULT 0,
    prompt_tokens     bigint      NOT NULL DEFAULT 0,
    output_tokens     bigint      NOT NULL DEFAULT 0,
    cost              numeric(20, 10),
    first_seen        timestamptz,
    last_seen         timestamptz,
    version           bigint      NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);

CREATE TABLE logs (
    project               text        NOT NULL,
    id                    text        NOT NULL,
    reference_id          text,
    prompt_id             text,
    version_id            text,
    path                  text,
    environment           text,
    session_id            text,
    session_reference_id  text,
    parent_id             text,
    parent_reference_id   text,
    trace_id              text,
    trace_parent_log_id   text,
    source_datapoint_id   text,
    evaluation_id         text,
    config_id             text,
    batch_ids             text[],
    save                  boolean     NOT NULL DEFAULT true,
    -- payloads (all NULL when save = false)
    messages              jsonb,
    inputs                jsonb,
    output                text,
    output_message        jsonb,
    raw_output            text,
    tools                 jsonb,
    tool_choice           jsonb,
    provider_request      jsonb,
    provider_response     jsonb,
    stdout                text,
    -- outcome, usage, cost, timing
    error                 text,
    finish_reason         text,
    judgment              jsonb,
    prompt_tokens         bigint,
    output_tokens         bigint,
    cached_tokens         bigint,
    reasoning_tokens      bigint,
    tokens                bigint,
    prompt_cost           numeric(20, 10),
    output_cost           numeric(20, 10),
    cost_source           text CHECK (cost_source IN ('provided', 'computed', 'unknown')),
    provider_latency      double precision,
    duration              double precision,
    start_time            timestamptz,
    end_time              timestamptz,
    metadata              jsonb,
    source                text,
    "user"                text,
    created_at            timestamptz,
    is_partial            boolean     NOT NULL DEFAULT false,  -- updates seen, create not yet
    version               bigint      NOT NULL DEFAULT 0,
    stored_at             timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);
CREATE UNIQUE INDEX logs_reference_id ON logs (project, reference_id)
    WHERE reference_id IS NOT NULL;
CREATE INDEX logs_trace ON logs (project, trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX logs_session ON logs (project, session_id) WHERE session_id IS NOT NULL;
CREATE INDEX logs_created_at ON logs (project, created_at);

CREATE TABLE traces (
    project           text        NOT NULL,
    id                text        NOT NULL,
    name              text,
    session_id        text,
    tags              jsonb,
    metadata          jsonb,
    input             text,
    output            text,
    status            text,       -- running | completed | error
    start_time        timestamptz,
    end_time          timestamptz,
    span_count        integer     NOT NULL DEFAULT 0,
    generation_count  integer     NOT NULL DEFAULT 0,
    log_count         integer     NOT NULL DEFAULT 0,
    error_count       integer     NOT NULL DEFAULT 0,
    prompt_tokens     bigint      NOT NULL DEFAULT 0,
    output_tokens     bigint      NOT NULL DEFAULT 0,
    cached_tokens     bigint      NOT NULL DEFAULT 0,
    reasoning_tokens  bigint      NOT NULL DEFAULT 0,
    total_tokens      bigint      NOT NULL DEFAULT 0,
    cost              numeric(20, 10),
    version           bigint      NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);
CREATE INDEX traces_session ON traces (project, session_id) WHERE session_id IS NOT NULL;
CREATE INDEX traces_start_time ON traces (project, start_time);

CREATE TABLE spans (
    project      text        NOT NULL,
    id           text        NOT NULL,
    trace_id     text        NOT NULL,
    parent_id    text,
    name         text,
    tags         jsonb,
    metadata     jsonb,
    start_time   timestamptz,
    end_time     timestamptz,
    version      bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);
CREATE INDEX spans_trace ON spans (project, trace_id);

CREATE TABLE generations (
    project            text        NOT NULL,
    id                 text        NOT NULL,
    trace_id           text        NOT NULL,
    parent_id          text,
    name               text,
    provider           text,
    model              text,
    model_parameters   jsonb,
    messages           jsonb,
    result             jsonb,
    error              jsonb,
    tags               jsonb,
    metadata           jsonb,
    prompt_tokens      bigint,
    completion_tokens  bigint,
    cached_tokens      bigint,
    reasoning_tokens   bigint,
    total_tokens       bigint,
    cost               numeric(20, 10),
    cost_source        text CHECK (cost_source IN ('provided', 'computed', 'unknown')),
    start_time         timestamptz,
    end_time           timestamptz,
    version            bigint      NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);
CREATE INDEX generations_trace ON generations (project, trace_id);

CREATE TABLE feedback (
    project       text        NOT NULL,
    id            text        NOT NULL,
    log_id        text,
    reference_id  text,
    value         jsonb       NOT NULL,
    source        text,
    "user"        text,
    metadata      jsonb,
    created_at    timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id),
    CHECK (log_id IS NOT NULL OR reference_id IS NOT NULL)
);
CREATE INDEX feedback_log ON feedback (project, log_id) WHERE log_id IS NOT NULL;
CREATE INDEX feedback_reference ON feedback (project, reference_id)
    WHERE reference_id IS NOT NULL;

-- Records the pipeline could not parse or validate, with the reason and their origin.
-- The raw bytes are kept for diagnosis (a dead letter is, by definition, not a valid event,
-- so no `save=false` promise can apply to it).
CREATE TABLE dead_letters (
    id            bigserial   PRIMARY KEY,
    topic         text        NOT NULL,
    "partition"   integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    event_index   integer     NOT NULL DEFAULT 0,  -- position within a batch record
    event_id      text,
    reason        text        NOT NULL,
    raw           bytea,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, "partition", "offset", event_index)
);
