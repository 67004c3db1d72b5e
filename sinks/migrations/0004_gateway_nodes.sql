-- The gateway's index of Maxim tree nodes: Maxim's commit lines name a span's or a
-- generation's own id only (`generation{id=g1,action=result,...}`), while every wire event
-- below a trace carries its trace id. The gateway records each node it accepts (before it
-- answers) and looks the trace up here for the later lines of that node.

CREATE TABLE gateway_nodes (
    project     text        NOT NULL,
    id          text        NOT NULL,
    kind        text        NOT NULL,  -- trace | span | generation
    trace_id    text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);

-- Keyset pagination of logs by time: newest first, ties broken by id.
CREATE INDEX logs_listing ON logs (project, (coalesce(created_at, stored_at)) DESC, id DESC);
CREATE INDEX traces_listing ON traces (project, (coalesce(start_time, first_seen)) DESC, id DESC);
