-- Maxim commit lines that name a span or generation the gateway has not seen created yet.
-- `maxim-py` uploads its batches concurrently, so a generation's `result` line can arrive
-- before the `add-generation` line that says which trace the generation belongs to. Such
-- a line is accepted (it is durable here before the gateway answers) and held until its
-- node is known; then it is translated and published exactly as if it had arrived after
-- its node, and deleted in the same transaction. Lines whose node never arrives are moved
-- to `dead_letters` (topic 'gateway.held') after the gateway's `held_ttl_s`.

CREATE TABLE gateway_held_lines (
    project      text        NOT NULL,
    event_id     text        NOT NULL,  -- what the line's event id will be (hash of the line)
    node_id      text        NOT NULL,  -- the span or generation the line is waiting for
    line         text        NOT NULL,  -- the commit line, verbatim
    line_index   integer     NOT NULL,  -- its position in its request (orders same-time lines)
    received_at  timestamptz NOT NULL,  -- its request's arrival: the event's ts comes from it
    seq          bigserial   NOT NULL,
    held_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, event_id)
);

CREATE INDEX gateway_held_lines_node ON gateway_held_lines (project, node_id);
CREATE INDEX gateway_held_lines_age ON gateway_held_lines (held_at);
