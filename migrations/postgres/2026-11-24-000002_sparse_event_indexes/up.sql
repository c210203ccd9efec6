-- The thread and message indexes of api_events hold only events that have a thread or a
-- message. Usage from outside the chat (the collector's events, provider reports) has
-- neither, and a full index took an entry for each such event all the same: two B-tree
-- inserts per event that no query reads. Every query on these columns compares them with
-- a value (`thread_id = ?`, a join on `message_id`), which implies IS NOT NULL, so both
-- SQLite and PostgreSQL still use the partial indexes for them.
DROP INDEX api_events_by_thread;
DROP INDEX api_events_by_message;
CREATE INDEX api_events_by_thread ON api_events (thread_id, occurred_at) WHERE thread_id IS NOT NULL;
CREATE INDEX api_events_by_message ON api_events (message_id) WHERE message_id IS NOT NULL;
