DROP INDEX archived_events_by_invoice;
ALTER TABLE archived_events DROP COLUMN invoice_id;
ALTER TABLE archived_events DROP COLUMN lines;
ALTER TABLE archived_events DROP COLUMN model;
