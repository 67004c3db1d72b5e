-- Rows the sink updates again and again get room on their page, so that an update can be a
-- heap-only tuple (HOT): a new row version on the same page and no new entry in any index.
-- A trace's rollup (tokens, cost, counts, last_seen...) is rewritten each time a window
-- brings a member; with full pages only 7% of those updates were HOT (pg_stat_user_tables,
-- a 100,000-event run of bench/pipeline_bench.py), and each of the others wrote an entry in
-- each of the table's five indexes. Applies to pages written from now on (VACUUM FULL
-- rewrites the old ones).
ALTER TABLE traces SET (fillfactor = 70);
ALTER TABLE sessions SET (fillfactor = 70);
ALTER TABLE prompt_version_stats SET (fillfactor = 70);

-- Every listing and time filter of logs reads coalesce(created_at, stored_at), which
-- logs_listing (0004) serves; this index on created_at alone is read by no query and cost
-- an entry per log written.
DROP INDEX IF EXISTS logs_created_at;
