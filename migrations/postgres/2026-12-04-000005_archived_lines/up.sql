-- Archived months answer metrics exactly (issue 16): each archived event keeps its model and
-- its cost lines (JSON: the invoice lines as the hot tables gave them, all invoiced) in the
-- hot index, so per-kind, per-model, per-thread and per-message totals of archived months
-- stay answerable without the Parquet files. Rows archived before this migration have NULLs
-- (their totals, threads and messages are still exact; their kind/model split reads "archived").
ALTER TABLE archived_events ADD COLUMN model TEXT;
ALTER TABLE archived_events ADD COLUMN lines TEXT;
-- The invoice the event's lines are on (all archived lines are invoiced, one invoice per event):
-- an invoice of an archived month still lists every one of its lines.
ALTER TABLE archived_events ADD COLUMN invoice_id UUID;
CREATE INDEX archived_events_by_invoice ON archived_events (invoice_id) WHERE invoice_id IS NOT NULL;
