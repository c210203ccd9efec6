-- SQLite stores ids as 16-byte BLOBs and instants as INTEGER microseconds since the
-- Unix epoch (UTC), instead of 36-character text ids and 27-character RFC 3339 text.
--
-- Why: rows and index entries get about half as long, so a usage event writes fewer
-- pages and compares shorter keys (store/examples/write_throughput and bench/ingest.sh:
-- see store/SCHEMA.md). Order is kept: a UUID's bytes sort like its hyphenated
-- lowercase text, and microseconds sort like the fixed-width text did.
--
-- Every table with an id or an instant is rebuilt and its rows converted; user ids,
-- decimals (exact TEXT) and the integer dimension keys are unchanged.

PRAGMA defer_foreign_keys = ON;

DROP VIEW message_tokens;
DROP INDEX dim_token_pricing_one_current;
DROP INDEX dim_resource_pricing_one_current;
DROP INDEX user_threads_by_user;
DROP INDEX user_threads_by_updated;
DROP INDEX user_thread_messages_by_thread;
DROP INDEX api_events_by_user;
DROP INDEX api_events_by_thread;
DROP INDEX api_events_by_message;
DROP INDEX api_events_by_time;
DROP INDEX user_invoices_by_user;
DROP INDEX user_invoice_line_item_by_event;
DROP INDEX user_invoice_line_item_by_invoice;
DROP INDEX resource_invoice_line_item_by_event;
DROP INDEX resource_invoice_line_item_by_invoice;

-- Renaming rewrites the old tables' references to each other; the new tables refer to the new ones.
ALTER TABLE dim_users RENAME TO dim_users_old;
ALTER TABLE dim_token_pricing RENAME TO dim_token_pricing_old;
ALTER TABLE dim_resource_pricing RENAME TO dim_resource_pricing_old;
ALTER TABLE user_threads RENAME TO user_threads_old;
ALTER TABLE user_thread_messages RENAME TO user_thread_messages_old;
ALTER TABLE api_events RENAME TO api_events_old;
ALTER TABLE user_invoices RENAME TO user_invoices_old;
ALTER TABLE user_invoice_line_item RENAME TO user_invoice_line_item_old;
ALTER TABLE resource_invoice_line_item RENAME TO resource_invoice_line_item_old;

CREATE TABLE dim_users (
    user_id               TEXT PRIMARY KEY NOT NULL,
    username              TEXT NOT NULL,
    email                 TEXT,
    created_at            INTEGER NOT NULL
);
INSERT INTO dim_users (user_id, username, email, created_at)
SELECT user_id,
       username,
       email,
       unixepoch(substr(created_at, 1, 19)) * 1000000 + CAST(substr(created_at, 21, 6) AS INTEGER)
FROM dim_users_old ORDER BY rowid;

CREATE TABLE dim_token_pricing (
    pricing_id            BLOB PRIMARY KEY NOT NULL,
    model_id              INTEGER NOT NULL REFERENCES dim_models (model_id),
    token_type            TEXT NOT NULL,
    price_per_million     TEXT NOT NULL,
    effective_from        INTEGER NOT NULL,
    effective_to          INTEGER,
    is_current            BOOLEAN NOT NULL,
    UNIQUE (model_id, token_type, effective_from),
    CHECK ((effective_to IS NULL) = is_current),
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);
INSERT INTO dim_token_pricing (pricing_id, model_id, token_type, price_per_million, effective_from, effective_to, is_current)
SELECT unhex(replace(pricing_id, '-', '')),
       model_id,
       token_type,
       price_per_million,
       unixepoch(substr(effective_from, 1, 19)) * 1000000 + CAST(substr(effective_from, 21, 6) AS INTEGER),
       unixepoch(substr(effective_to, 1, 19)) * 1000000 + CAST(substr(effective_to, 21, 6) AS INTEGER),
       is_current
FROM dim_token_pricing_old ORDER BY rowid;
CREATE UNIQUE INDEX dim_token_pricing_one_current ON dim_token_pricing (model_id, token_type) WHERE is_current;

CREATE TABLE dim_resource_pricing (
    resource_pricing_id   BLOB PRIMARY KEY NOT NULL,
    model_id              INTEGER NOT NULL REFERENCES dim_models (model_id),
    event_type_id         INTEGER NOT NULL REFERENCES dim_event_types (event_type_id),
    unit_price            TEXT NOT NULL,
    effective_from        INTEGER NOT NULL,
    effective_to          INTEGER,
    is_current            BOOLEAN NOT NULL,
    UNIQUE (model_id, event_type_id, effective_from),
    CHECK ((effective_to IS NULL) = is_current),
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);
INSERT INTO dim_resource_pricing (resource_pricing_id, model_id, event_type_id, unit_price, effective_from, effective_to, is_current)
SELECT unhex(replace(resource_pricing_id, '-', '')),
       model_id,
       event_type_id,
       unit_price,
       unixepoch(substr(effective_from, 1, 19)) * 1000000 + CAST(substr(effective_from, 21, 6) AS INTEGER),
       unixepoch(substr(effective_to, 1, 19)) * 1000000 + CAST(substr(effective_to, 21, 6) AS INTEGER),
       is_current
FROM dim_resource_pricing_old ORDER BY rowid;
CREATE UNIQUE INDEX dim_resource_pricing_one_current ON dim_resource_pricing (model_id, event_type_id) WHERE is_current;

CREATE TABLE user_threads (
    thread_id             BLOB PRIMARY KEY NOT NULL,
    user_id               TEXT NOT NULL REFERENCES dim_users (user_id),
    title                 TEXT NOT NULL,
    model_id              INTEGER NOT NULL REFERENCES dim_models (model_id),
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    is_active             BOOLEAN NOT NULL DEFAULT 1
);
INSERT INTO user_threads (thread_id, user_id, title, model_id, created_at, updated_at, is_active)
SELECT unhex(replace(thread_id, '-', '')),
       user_id,
       title,
       model_id,
       unixepoch(substr(created_at, 1, 19)) * 1000000 + CAST(substr(created_at, 21, 6) AS INTEGER),
       unixepoch(substr(updated_at, 1, 19)) * 1000000 + CAST(substr(updated_at, 21, 6) AS INTEGER),
       is_active
FROM user_threads_old ORDER BY rowid;
CREATE INDEX user_threads_by_user ON user_threads (user_id, updated_at);
CREATE INDEX user_threads_by_updated ON user_threads (updated_at);

CREATE TABLE user_thread_messages (
    message_id            BLOB PRIMARY KEY NOT NULL,
    thread_id             BLOB NOT NULL REFERENCES user_threads (thread_id),
    user_id               TEXT NOT NULL REFERENCES dim_users (user_id),
    content               TEXT NOT NULL,
    role                  TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    model_id              INTEGER NOT NULL REFERENCES dim_models (model_id),
    created_at            INTEGER NOT NULL,
    simulated             BOOLEAN NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('complete', 'interrupted', 'failed'))
);
INSERT INTO user_thread_messages (message_id, thread_id, user_id, content, role, model_id, created_at, simulated, status)
SELECT unhex(replace(message_id, '-', '')),
       unhex(replace(thread_id, '-', '')),
       user_id,
       content,
       role,
       model_id,
       unixepoch(substr(created_at, 1, 19)) * 1000000 + CAST(substr(created_at, 21, 6) AS INTEGER),
       simulated,
       status
FROM user_thread_messages_old ORDER BY rowid;
CREATE INDEX user_thread_messages_by_thread ON user_thread_messages (thread_id, created_at);

CREATE TABLE api_events (
    event_seq             INTEGER PRIMARY KEY NOT NULL,
    event_id              BLOB NOT NULL UNIQUE,
    user_id               TEXT NOT NULL REFERENCES dim_users (user_id),
    thread_id             BLOB,
    message_id            BLOB,
    model_id              INTEGER NOT NULL REFERENCES dim_models (model_id),
    event_type_id         INTEGER NOT NULL REFERENCES dim_event_types (event_type_id),
    quantity              TEXT NOT NULL,
    cost_total            TEXT NOT NULL,
    source                TEXT NOT NULL,
    idempotency_key       TEXT,
    occurred_at           INTEGER NOT NULL,
    created_at            INTEGER NOT NULL
);
INSERT INTO api_events (event_seq, event_id, user_id, thread_id, message_id, model_id, event_type_id, quantity, cost_total, source, idempotency_key, occurred_at, created_at)
SELECT event_seq,
       unhex(replace(event_id, '-', '')),
       user_id,
       unhex(replace(thread_id, '-', '')),
       unhex(replace(message_id, '-', '')),
       model_id,
       event_type_id,
       quantity,
       cost_total,
       source,
       idempotency_key,
       unixepoch(substr(occurred_at, 1, 19)) * 1000000 + CAST(substr(occurred_at, 21, 6) AS INTEGER),
       unixepoch(substr(created_at, 1, 19)) * 1000000 + CAST(substr(created_at, 21, 6) AS INTEGER)
FROM api_events_old ORDER BY event_seq;
CREATE INDEX api_events_by_user ON api_events (user_id, occurred_at);
CREATE INDEX api_events_by_thread ON api_events (thread_id, occurred_at);
CREATE INDEX api_events_by_message ON api_events (message_id);
CREATE INDEX api_events_by_time ON api_events (occurred_at);

CREATE TABLE user_invoices (
    invoice_id            BLOB PRIMARY KEY NOT NULL,
    user_id               TEXT NOT NULL REFERENCES dim_users (user_id),
    thread_id             BLOB,
    period_start          INTEGER,
    period_end            INTEGER,
    subtotal              TEXT NOT NULL,
    total_amount          TEXT NOT NULL,
    invoice_date          INTEGER NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('pending', 'paid'))
);
INSERT INTO user_invoices (invoice_id, user_id, thread_id, period_start, period_end, subtotal, total_amount, invoice_date, status)
SELECT unhex(replace(invoice_id, '-', '')),
       user_id,
       unhex(replace(thread_id, '-', '')),
       unixepoch(substr(period_start, 1, 19)) * 1000000 + CAST(substr(period_start, 21, 6) AS INTEGER),
       unixepoch(substr(period_end, 1, 19)) * 1000000 + CAST(substr(period_end, 21, 6) AS INTEGER),
       subtotal,
       total_amount,
       unixepoch(substr(invoice_date, 1, 19)) * 1000000 + CAST(substr(invoice_date, 21, 6) AS INTEGER),
       status
FROM user_invoices_old ORDER BY rowid;
CREATE INDEX user_invoices_by_user ON user_invoices (user_id, invoice_date);

CREATE TABLE user_invoice_line_item (
    line_item_id          BLOB PRIMARY KEY NOT NULL,
    event_seq             INTEGER NOT NULL REFERENCES api_events (event_seq),
    token_type            TEXT NOT NULL,
    token_count           BIGINT NOT NULL CHECK (token_count >= 0),
    pricing_id            BLOB NOT NULL REFERENCES dim_token_pricing (pricing_id),
    quantity              TEXT NOT NULL,
    unit_price            TEXT NOT NULL,
    amount                TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    invoice_id            BLOB REFERENCES user_invoices (invoice_id)
);
INSERT INTO user_invoice_line_item (line_item_id, event_seq, token_type, token_count, pricing_id, quantity, unit_price, amount, created_at, invoice_id)
SELECT unhex(replace(line_item_id, '-', '')),
       event_seq,
       token_type,
       token_count,
       unhex(replace(pricing_id, '-', '')),
       quantity,
       unit_price,
       amount,
       unixepoch(substr(created_at, 1, 19)) * 1000000 + CAST(substr(created_at, 21, 6) AS INTEGER),
       unhex(replace(invoice_id, '-', ''))
FROM user_invoice_line_item_old ORDER BY rowid;
CREATE INDEX user_invoice_line_item_by_event ON user_invoice_line_item (event_seq);
CREATE INDEX user_invoice_line_item_by_invoice ON user_invoice_line_item (invoice_id) WHERE invoice_id IS NOT NULL;

CREATE TABLE resource_invoice_line_item (
    resource_line_item_id BLOB PRIMARY KEY NOT NULL,
    event_seq             INTEGER NOT NULL REFERENCES api_events (event_seq),
    resource_pricing_id   BLOB NOT NULL REFERENCES dim_resource_pricing (resource_pricing_id),
    event_type_id         INTEGER NOT NULL REFERENCES dim_event_types (event_type_id),
    quantity              TEXT NOT NULL,
    unit_price            TEXT NOT NULL,
    amount                TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    invoice_id            BLOB REFERENCES user_invoices (invoice_id)
);
INSERT INTO resource_invoice_line_item (resource_line_item_id, event_seq, resource_pricing_id, event_type_id, quantity, unit_price, amount, created_at, invoice_id)
SELECT unhex(replace(resource_line_item_id, '-', '')),
       event_seq,
       unhex(replace(resource_pricing_id, '-', '')),
       event_type_id,
       quantity,
       unit_price,
       amount,
       unixepoch(substr(created_at, 1, 19)) * 1000000 + CAST(substr(created_at, 21, 6) AS INTEGER),
       unhex(replace(invoice_id, '-', ''))
FROM resource_invoice_line_item_old ORDER BY rowid;
CREATE INDEX resource_invoice_line_item_by_event ON resource_invoice_line_item (event_seq);
CREATE INDEX resource_invoice_line_item_by_invoice ON resource_invoice_line_item (invoice_id) WHERE invoice_id IS NOT NULL;

DROP TABLE resource_invoice_line_item_old;
DROP TABLE user_invoice_line_item_old;
DROP TABLE user_invoices_old;
DROP TABLE api_events_old;
DROP TABLE user_thread_messages_old;
DROP TABLE user_threads_old;
DROP TABLE dim_resource_pricing_old;
DROP TABLE dim_token_pricing_old;
DROP TABLE dim_users_old;

-- The seed's message_tokens, read from the token lines.
CREATE VIEW message_tokens AS
SELECT l.line_item_id AS token_id, e.event_id, e.message_id, l.token_type, l.token_count, l.created_at
FROM user_invoice_line_item l JOIN api_events e ON e.event_seq = l.event_seq;
