-- Humanloop's other log kinds (issue 16): a log is of a Prompt, a Flow, a Tool or an
-- Evaluator (`log_kind`). A Flow log is the root of a trace that other logs join through
-- `trace_parent_log_id` (the gateway sets their `trace_id` to the root's id); an Evaluator
-- log is a judgment on its parent log (`parent_id`), read with that log. `file` holds a
-- Flow's or Tool's kernel or an Evaluator's spec (a Prompt's details stay in `prompt`);
-- `prompt_id` is the id of the log's File whatever its kind. `log_status` is Humanloop's
-- incomplete / complete: a trace holding an incomplete log is running.

ALTER TABLE logs ADD COLUMN log_kind text NOT NULL DEFAULT 'prompt';
ALTER TABLE logs ADD COLUMN log_status text;
ALTER TABLE logs ADD COLUMN marked_completed boolean;
ALTER TABLE logs ADD COLUMN file jsonb;

-- The evaluator logs of a log (its judgments), by the judged log's id or reference id.
CREATE INDEX logs_parent ON logs (project, parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX logs_parent_reference ON logs (project, parent_reference_id)
    WHERE parent_reference_id IS NOT NULL;

-- The gateway's index of the Humanloop logs it accepted inside a trace, and of the logs it
-- accepted with a reference id: Humanloop names a child's parent log only
-- (`trace_parent_id`), while every log of a trace carries the trace's root id, and an
-- update by log id must reach the log's entity, which is keyed by its reference id. Written
-- before the gateway answers, so the next request, through any gateway, finds them. Ids
-- only, never a payload.
CREATE TABLE gateway_logs (
    project       text        NOT NULL,
    id            text        NOT NULL,
    trace_id      text,
    reference_id  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);
