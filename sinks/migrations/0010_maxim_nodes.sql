-- Every Maxim logger entity has a place (issue 16): tool calls, retrievals, events, errors
-- and attachments of a trace, and a session's own node (name, tags, metadata, start, end)
-- with its events and attachments, one row per (project, kind, id) in `trace_nodes`; the
-- columns of a kind hold its fields (a tool call's args, result and error, a retrieval's
-- query and documents, an attachment's metadata and URL or size, never its bytes).
-- Feedback may rate a trace or a session (Maxim's score and comment) as well as a log.
-- Metrics (`add_metric`) are merged key by key on traces, spans, generations and nodes; a
-- span keeps its input; a generation keeps the messages appended after its creation and
-- the cost its caller gave; a trace's rollup sums its nodes' own latencies per kind.

CREATE TABLE trace_nodes (
    project          text        NOT NULL,
    kind             text        NOT NULL,  -- tool_call | retrieval | event | error | attachment | session
    id               text        NOT NULL,
    trace_id         text,
    session_id       text,
    parent_id        text,
    name             text,
    description      text,
    tags             jsonb,
    metadata         jsonb,
    metrics          jsonb,
    args             text,
    result           text,
    error            jsonb,
    query            text,
    documents        jsonb,
    attachment       jsonb,
    start_time       timestamptz,
    end_time         timestamptz,
    is_partial       boolean     NOT NULL DEFAULT false,
    version          bigint      NOT NULL DEFAULT 0,
    payload_carried  integer     NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, kind, id)
);
CREATE INDEX trace_nodes_trace ON trace_nodes (project, trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX trace_nodes_session ON trace_nodes (project, session_id)
    WHERE session_id IS NOT NULL;

ALTER TABLE feedback ADD COLUMN trace_id text;
ALTER TABLE feedback ADD COLUMN session_id text;
ALTER TABLE feedback ADD COLUMN comment text;
ALTER TABLE feedback DROP CONSTRAINT feedback_check;
ALTER TABLE feedback ADD CONSTRAINT feedback_target CHECK (
    log_id IS NOT NULL OR reference_id IS NOT NULL OR trace_id IS NOT NULL
    OR session_id IS NOT NULL
);
CREATE INDEX feedback_trace ON feedback (project, trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX feedback_session ON feedback (project, session_id) WHERE session_id IS NOT NULL;

ALTER TABLE traces ADD COLUMN metrics jsonb;
ALTER TABLE traces ADD COLUMN latencies jsonb;
ALTER TABLE spans ADD COLUMN metrics jsonb;
ALTER TABLE spans ADD COLUMN input text;
ALTER TABLE spans ADD COLUMN payload_carried integer NOT NULL DEFAULT 0;
ALTER TABLE generations ADD COLUMN metrics jsonb;
ALTER TABLE generations ADD COLUMN added_messages jsonb;
ALTER TABLE generations ADD COLUMN caller_cost jsonb;
