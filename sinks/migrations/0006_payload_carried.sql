-- Entity outputs carry only the payload fields (messages, inputs, outputs, provider request
-- and response, a generation's result) that the events of their version brought: the
-- processors no longer keep payloads in their state (producers/contract/outputs.py). The
-- upsert writes a payload column only when the row's output carries it. `payload_carried`
-- is that bitmask (bit i = the table spec's i-th payload column, sinks/tables.py), as the
-- row's last write had it; only the upsert reads it.

ALTER TABLE logs ADD COLUMN payload_carried integer NOT NULL DEFAULT 0;
ALTER TABLE generations ADD COLUMN payload_carried integer NOT NULL DEFAULT 0;
ALTER TABLE traces ADD COLUMN payload_carried integer NOT NULL DEFAULT 0;
