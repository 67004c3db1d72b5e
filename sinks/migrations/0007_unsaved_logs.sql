-- The save=false logs the gateways accepted, by handle: 'id:<log id>' and
-- 'ref:<reference id>'. An update of a log (by id or reference id) never repeats the
-- flag, so a gateway looks its target up here (and in `logs`, where the pipeline stored
-- the log with save = false) and strips the update's payload fields before publishing it:
-- any gateway of a deployment, whichever accepted the create. Ids only, never a payload.
-- Rows older than the gateway's `unsaved_ttl_s` are swept (by then `logs` has the log).

CREATE TABLE unsaved_logs (
    project   text        NOT NULL,
    handle    text        NOT NULL,
    noted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, handle)
);

CREATE INDEX unsaved_logs_age ON unsaved_logs (noted_at);
