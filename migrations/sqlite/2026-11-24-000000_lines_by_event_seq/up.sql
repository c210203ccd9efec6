-- Usage lines point at their event by a sequential integer instead of copying its
-- columns, and token counts live on the token line (message_tokens becomes a view).
--
-- Why: every usage event wrote an api_events row plus, per token kind, a
-- message_tokens row and a line row carrying copies of the event's text id, user,
-- thread, message and time, each line indexed by the event's random id. Those
-- random index inserts dirtied pages all over the file on every commit. Now a line
-- is one row keyed to the event's `event_seq` (the rowid, always increasing), so
-- the write path appends. See store/SCHEMA.md.
--
-- Existing data is carried over: the event's rowid becomes its event_seq, and each
-- token line takes its count from its message_tokens row. Token ids (only ever an
-- internal join key) become the line's id.

PRAGMA defer_foreign_keys = ON;

DROP INDEX api_events_by_user;
DROP INDEX api_events_by_thread;
DROP INDEX api_events_by_message;
DROP INDEX api_events_by_time;
DROP INDEX user_invoice_line_item_by_event;
DROP INDEX user_invoice_line_item_by_invoice;
DROP INDEX resource_invoice_line_item_by_event;
DROP INDEX resource_invoice_line_item_by_invoice;

-- Renaming rewrites the references of the old child tables to the old parents.
ALTER TABLE api_events RENAME TO api_events_old;
ALTER TABLE user_invoice_line_item RENAME TO user_invoice_line_item_old;
ALTER TABLE resource_invoice_line_item RENAME TO resource_invoice_line_item_old;

CREATE TABLE api_events (
    event_seq       INTEGER PRIMARY KEY NOT NULL,
    event_id        TEXT NOT NULL UNIQUE,
    user_id         TEXT NOT NULL REFERENCES dim_users (user_id),
    thread_id       TEXT,
    message_id      TEXT,
    model_id        INTEGER NOT NULL REFERENCES dim_models (model_id),
    event_type_id   INTEGER NOT NULL REFERENCES dim_event_types (event_type_id),
    quantity        TEXT NOT NULL,
    cost_total      TEXT NOT NULL,
    source          TEXT NOT NULL,
    idempotency_key TEXT,
    occurred_at     TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
INSERT INTO api_events (event_seq, event_id, user_id, thread_id, message_id, model_id, event_type_id,
                        quantity, cost_total, source, idempotency_key, occurred_at, created_at)
SELECT rowid, event_id, user_id, thread_id, message_id, model_id, event_type_id,
       quantity, cost_total, source, idempotency_key, occurred_at, created_at
FROM api_events_old ORDER BY rowid;
CREATE INDEX api_events_by_user ON api_events (user_id, occurred_at);
CREATE INDEX api_events_by_thread ON api_events (thread_id, occurred_at);
CREATE INDEX api_events_by_message ON api_events (message_id);
CREATE INDEX api_events_by_time ON api_events (occurred_at);

CREATE TABLE user_invoice_line_item (
    line_item_id TEXT PRIMARY KEY NOT NULL,
    event_seq    INTEGER NOT NULL REFERENCES api_events (event_seq),
    token_type   TEXT NOT NULL,
    token_count  BIGINT NOT NULL CHECK (token_count >= 0),
    pricing_id   TEXT NOT NULL REFERENCES dim_token_pricing (pricing_id),
    quantity     TEXT NOT NULL,
    unit_price   TEXT NOT NULL,
    amount       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    invoice_id   TEXT REFERENCES user_invoices (invoice_id)
);
INSERT INTO user_invoice_line_item (line_item_id, event_seq, token_type, token_count, pricing_id,
                                    quantity, unit_price, amount, created_at, invoice_id)
SELECT l.line_item_id, e.event_seq, t.token_type, t.token_count, l.pricing_id,
       l.quantity, l.unit_price, l.amount, l.created_at, l.invoice_id
FROM user_invoice_line_item_old l
JOIN message_tokens t ON t.token_id = l.token_id
JOIN api_events e ON e.event_id = l.event_id
ORDER BY l.rowid;
CREATE INDEX user_invoice_line_item_by_event ON user_invoice_line_item (event_seq);
-- Partial: lines are written uninvoiced, so the write path never touches this index.
CREATE INDEX user_invoice_line_item_by_invoice ON user_invoice_line_item (invoice_id) WHERE invoice_id IS NOT NULL;

CREATE TABLE resource_invoice_line_item (
    resource_line_item_id TEXT PRIMARY KEY NOT NULL,
    event_seq             INTEGER NOT NULL REFERENCES api_events (event_seq),
    resource_pricing_id   TEXT NOT NULL REFERENCES dim_resource_pricing (resource_pricing_id),
    event_type_id         INTEGER NOT NULL REFERENCES dim_event_types (event_type_id),
    quantity              TEXT NOT NULL,
    unit_price            TEXT NOT NULL,
    amount                TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    invoice_id            TEXT REFERENCES user_invoices (invoice_id)
);
INSERT INTO resource_invoice_line_item (resource_line_item_id, event_seq, resource_pricing_id, event_type_id,
                                        quantity, unit_price, amount, created_at, invoice_id)
SELECT l.resource_line_item_id, e.event_seq, l.resource_pricing_id, l.event_type_id,
       l.quantity, l.unit_price, l.amount, l.created_at, l.invoice_id
FROM resource_invoice_line_item_old l
JOIN api_events e ON e.event_id = l.event_id
ORDER BY l.rowid;
CREATE INDEX resource_invoice_line_item_by_event ON resource_invoice_line_item (event_seq);
CREATE INDEX resource_invoice_line_item_by_invoice ON resource_invoice_line_item (invoice_id) WHERE invoice_id IS NOT NULL;

DROP TABLE user_invoice_line_item_old;
DROP TABLE resource_invoice_line_item_old;
DROP TABLE message_tokens;
DROP TABLE api_events_old;

-- The seed's message_tokens, read from the token lines.
CREATE VIEW message_tokens AS
SELECT l.line_item_id AS token_id, e.event_id, e.message_id, l.token_type, l.token_count, l.created_at
FROM user_invoice_line_item l JOIN api_events e ON e.event_seq = l.event_seq;
