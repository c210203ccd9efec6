-- Retention and archiving (issue 16): usage events of closed months move to Parquet files.
--
-- archive_months: one row per month that was (or is being) archived: the resumable state
-- machine (writing -> written -> archived; restore: archived -> restored) and the manifest.
-- archived_events: a hot index of every archived event (id, owner, cost, model, invoice and
-- cost lines), so an event re-sent after its month was archived is still recognised as a
-- duplicate (the trigger below skips its insert, and the persister then reports it as a
-- duplicate), and metrics, histories and invoices of archived months answer exactly.

CREATE TABLE archive_months (
    month        TEXT PRIMARY KEY NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('writing', 'written', 'archived', 'restored')),
    location     TEXT NOT NULL,
    manifest     TEXT,
    updated_at   INTEGER NOT NULL,
    archived_at  INTEGER,
    verified_at  INTEGER
);

CREATE TABLE archived_events (
    event_id     BLOB PRIMARY KEY NOT NULL,
    month        TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    thread_id    BLOB,
    message_id   BLOB,
    cost_total   TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL,
    -- Its model and cost lines (JSON: the invoice lines as the hot tables gave them, all
    -- invoiced), and the invoice they are on: metrics, histories and invoices of archived
    -- months answer exactly without the Parquet files.
    model        TEXT NOT NULL,
    lines        TEXT NOT NULL,
    invoice_id   BLOB
);
CREATE INDEX archived_events_by_month ON archived_events (month);
CREATE INDEX archived_events_by_user ON archived_events (user_id, occurred_at);
CREATE INDEX archived_events_by_thread ON archived_events (thread_id) WHERE thread_id IS NOT NULL;
CREATE INDEX archived_events_by_invoice ON archived_events (invoice_id) WHERE invoice_id IS NOT NULL;

-- The trigger that keeps archived ids duplicates (api_events_skip_archived) is created by the
-- first archive, in its moving transaction (store/src/repo/sqlite.rs, SKIP_ARCHIVED_TRIGGER):
-- a store that never archives pays nothing for it on the write path.
