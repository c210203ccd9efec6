-- Back to lines that copy their event's columns, and a message_tokens table.
PRAGMA defer_foreign_keys = ON;

DROP VIEW message_tokens;
DROP INDEX api_events_by_user;
DROP INDEX api_events_by_thread;
DROP INDEX api_events_by_message;
DROP INDEX api_events_by_time;
DROP INDEX user_invoice_line_item_by_event;
DROP INDEX user_invoice_line_item_by_invoice;
DROP INDEX resource_invoice_line_item_by_event;
DROP INDEX resource_invoice_line_item_by_invoice;

ALTER TABLE api_events RENAME TO api_events_new;
ALTER TABLE user_invoice_line_item RENAME TO user_invoice_line_item_new;
ALTER TABLE resource_invoice_line_item RENAME TO resource_invoice_line_item_new;

CREATE TABLE api_events (
    event_id        TEXT PRIMARY KEY NOT NULL,
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
INSERT INTO api_events
SELECT event_id, user_id, thread_id, message_id, model_id, event_type_id, quantity, cost_total, source,
       idempotency_key, occurred_at, created_at
FROM api_events_new ORDER BY event_seq;
CREATE INDEX api_events_by_user ON api_events (user_id, occurred_at);
CREATE INDEX api_events_by_thread ON api_events (thread_id, occurred_at);
CREATE INDEX api_events_by_message ON api_events (message_id);
CREATE INDEX api_events_by_time ON api_events (occurred_at);

CREATE TABLE message_tokens (
    token_id    TEXT PRIMARY KEY NOT NULL,
    event_id    TEXT NOT NULL REFERENCES api_events (event_id),
    message_id  TEXT,
    token_type  TEXT NOT NULL,
    token_count BIGINT NOT NULL CHECK (token_count >= 0),
    created_at  TEXT NOT NULL
);
INSERT INTO message_tokens
SELECT l.line_item_id, e.event_id, e.message_id, l.token_type, l.token_count, l.created_at
FROM user_invoice_line_item_new l JOIN api_events_new e ON e.event_seq = l.event_seq;

CREATE TABLE user_invoice_line_item (
    line_item_id TEXT PRIMARY KEY NOT NULL,
    event_id     TEXT NOT NULL,
    message_id   TEXT,
    thread_id    TEXT,
    user_id      TEXT NOT NULL,
    token_id     TEXT NOT NULL REFERENCES message_tokens (token_id),
    pricing_id   TEXT NOT NULL REFERENCES dim_token_pricing (pricing_id),
    quantity     TEXT NOT NULL,
    unit_price   TEXT NOT NULL,
    amount       TEXT NOT NULL,
    occurred_at  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    invoice_id   TEXT REFERENCES user_invoices (invoice_id)
);
INSERT INTO user_invoice_line_item
SELECT l.line_item_id, e.event_id, e.message_id, e.thread_id, e.user_id, l.line_item_id, l.pricing_id,
       l.quantity, l.unit_price, l.amount, e.occurred_at, l.created_at, l.invoice_id
FROM user_invoice_line_item_new l JOIN api_events_new e ON e.event_seq = l.event_seq;
CREATE INDEX user_invoice_line_item_by_event ON user_invoice_line_item (event_id);
CREATE INDEX user_invoice_line_item_by_invoice ON user_invoice_line_item (invoice_id) WHERE invoice_id IS NOT NULL;

CREATE TABLE resource_invoice_line_item (
    resource_line_item_id TEXT PRIMARY KEY NOT NULL,
    event_id              TEXT NOT NULL REFERENCES api_events (event_id),
    user_id               TEXT NOT NULL REFERENCES dim_users (user_id),
    thread_id             TEXT,
    message_id            TEXT,
    resource_pricing_id   TEXT NOT NULL REFERENCES dim_resource_pricing (resource_pricing_id),
    event_type_id         INTEGER NOT NULL REFERENCES dim_event_types (event_type_id),
    quantity              TEXT NOT NULL,
    unit_price            TEXT NOT NULL,
    amount                TEXT NOT NULL,
    occurred_at           TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    invoice_id            TEXT REFERENCES user_invoices (invoice_id)
);
INSERT INTO resource_invoice_line_item
SELECT l.resource_line_item_id, e.event_id, e.user_id, e.thread_id, e.message_id, l.resource_pricing_id,
       l.event_type_id, l.quantity, l.unit_price, l.amount, e.occurred_at, l.created_at, l.invoice_id
FROM resource_invoice_line_item_new l JOIN api_events_new e ON e.event_seq = l.event_seq;
CREATE INDEX resource_invoice_line_item_by_event ON resource_invoice_line_item (event_id);
CREATE INDEX resource_invoice_line_item_by_invoice ON resource_invoice_line_item (invoice_id) WHERE invoice_id IS NOT NULL;

DROP TABLE user_invoice_line_item_new;
DROP TABLE resource_invoice_line_item_new;
DROP TABLE api_events_new;
