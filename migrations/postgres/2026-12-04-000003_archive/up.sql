-- Retention and archiving (issue 16): see the SQLite migration of the same name.

CREATE TABLE archive_months (
    month        TEXT PRIMARY KEY NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('writing', 'written', 'archived', 'restored')),
    location     TEXT NOT NULL,
    manifest     TEXT,
    updated_at   TIMESTAMPTZ NOT NULL,
    archived_at  TIMESTAMPTZ,
    verified_at  TIMESTAMPTZ
);

CREATE TABLE archived_events (
    event_id     UUID PRIMARY KEY NOT NULL,
    month        TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    thread_id    UUID,
    message_id   UUID,
    cost_total   NUMERIC NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    -- Its model and cost lines (JSON: the invoice lines as the hot tables gave them, all
    -- invoiced), and the invoice they are on: metrics, histories and invoices of archived
    -- months answer exactly without the Parquet files.
    model        TEXT NOT NULL,
    lines        TEXT NOT NULL,
    invoice_id   UUID
);
CREATE INDEX archived_events_by_month ON archived_events (month);
CREATE INDEX archived_events_by_user ON archived_events (user_id, occurred_at);
CREATE INDEX archived_events_by_thread ON archived_events (thread_id) WHERE thread_id IS NOT NULL;
CREATE INDEX archived_events_by_invoice ON archived_events (invoice_id) WHERE invoice_id IS NOT NULL;

-- An event whose id was archived is a duplicate: skip its row (returning NULL from a BEFORE
-- trigger drops just this row; RETURNING does not report it). The trigger itself is created by
-- the first archive (store/src/repo/postgres.rs, SKIP_ARCHIVED_TRIGGER), so a store that never
-- archives pays nothing for it on the write path.
CREATE FUNCTION api_events_skip_archived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM archived_events WHERE event_id = NEW.event_id) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
