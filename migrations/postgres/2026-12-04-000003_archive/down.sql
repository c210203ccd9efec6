DROP TRIGGER IF EXISTS api_events_skip_archived ON api_events;
DROP FUNCTION api_events_skip_archived();
DROP TABLE archived_events;
DROP TABLE archive_months;
