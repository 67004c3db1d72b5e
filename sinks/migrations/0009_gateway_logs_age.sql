-- The gateway's sweeper forgets `gateway_logs` rows older than its unsaved_ttl_s (7 days by
-- default; by then the pipeline stored those logs and `logs` answers the same lookups), as
-- it does `unsaved_logs`: the age index that sweep reads. (A migration of its own: 0008
-- was already applied where tests ran.)

CREATE INDEX gateway_logs_age ON gateway_logs (created_at);
