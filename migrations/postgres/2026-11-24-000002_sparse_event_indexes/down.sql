DROP INDEX api_events_by_thread;
DROP INDEX api_events_by_message;
CREATE INDEX api_events_by_thread ON api_events (thread_id, occurred_at);
CREATE INDEX api_events_by_message ON api_events (message_id);
