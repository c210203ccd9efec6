-- Tally schema for SQLite. See store/SCHEMA.md for how it departs from the seed schema.
-- Storage conventions (SQLite):
--   ids (UUIDv7)   TEXT, hyphenated lowercase
--   money/decimal  TEXT, rust_decimal's exact string form (never REAL)
--   timestamps     TEXT, fixed-width RFC 3339 UTC with 6 fractional digits
--                  ('2025-01-01T00:00:00.000000Z'), so text order is time order
--   booleans       INTEGER 0/1

CREATE TABLE dim_users (
    user_id     TEXT PRIMARY KEY NOT NULL,
    username    TEXT NOT NULL,
    email       TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE dim_models (
    model_id    INTEGER PRIMARY KEY NOT NULL,
    model_name  TEXT NOT NULL UNIQUE,
    provider    TEXT NOT NULL,
    description TEXT NOT NULL,
    is_active   BOOLEAN NOT NULL DEFAULT 1
);

CREATE TABLE dim_event_types (
    event_type_id   INTEGER PRIMARY KEY NOT NULL,
    event_name      TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL,
    unit_of_measure TEXT NOT NULL,
    is_active       BOOLEAN NOT NULL DEFAULT 1
);

-- The store relies on this row: every usage with a token line is a token_usage event.
INSERT INTO dim_event_types (event_name, description, unit_of_measure, is_active)
VALUES ('token_usage', 'LLM token usage (input, output and cache tokens)', 'tokens', 1);

-- SCD2, one row per (model, token kind) version.
CREATE TABLE dim_token_pricing (
    pricing_id        TEXT PRIMARY KEY NOT NULL,
    model_id          INTEGER NOT NULL REFERENCES dim_models (model_id),
    token_type        TEXT NOT NULL,
    price_per_million TEXT NOT NULL,
    effective_from    TEXT NOT NULL,
    effective_to      TEXT,
    is_current        BOOLEAN NOT NULL,
    UNIQUE (model_id, token_type, effective_from),
    CHECK ((effective_to IS NULL) = is_current),
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);
CREATE UNIQUE INDEX dim_token_pricing_one_current
    ON dim_token_pricing (model_id, token_type) WHERE is_current;

-- SCD2, one row per (model, resource event type) version.
CREATE TABLE dim_resource_pricing (
    resource_pricing_id TEXT PRIMARY KEY NOT NULL,
    model_id            INTEGER NOT NULL REFERENCES dim_models (model_id),
    event_type_id       INTEGER NOT NULL REFERENCES dim_event_types (event_type_id),
    unit_price          TEXT NOT NULL,
    effective_from      TEXT NOT NULL,
    effective_to        TEXT,
    is_current          BOOLEAN NOT NULL,
    UNIQUE (model_id, event_type_id, effective_from),
    CHECK ((effective_to IS NULL) = is_current),
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);
CREATE UNIQUE INDEX dim_resource_pricing_one_current
    ON dim_resource_pricing (model_id, event_type_id) WHERE is_current;

CREATE TABLE user_threads (
    thread_id  TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES dim_users (user_id),
    title      TEXT NOT NULL,
    model_id   INTEGER NOT NULL REFERENCES dim_models (model_id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    is_active  BOOLEAN NOT NULL DEFAULT 1
);
CREATE INDEX user_threads_by_user ON user_threads (user_id, updated_at);
CREATE INDEX user_threads_by_updated ON user_threads (updated_at);

CREATE TABLE user_thread_messages (
    message_id TEXT PRIMARY KEY NOT NULL,
    thread_id  TEXT NOT NULL REFERENCES user_threads (thread_id),
    user_id    TEXT NOT NULL REFERENCES dim_users (user_id),
    content    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    model_id   INTEGER NOT NULL REFERENCES dim_models (model_id),
    created_at TEXT NOT NULL,
    simulated  BOOLEAN NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('complete', 'interrupted', 'failed'))
);
CREATE INDEX user_thread_messages_by_thread ON user_thread_messages (thread_id, created_at);

-- thread_id and message_id are soft links (no FK): usage may be persisted before
-- its message, or come from an external source that has no thread here.
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

CREATE TABLE user_invoices (
    invoice_id   TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES dim_users (user_id),
    thread_id    TEXT,
    period_start TEXT,
    period_end   TEXT,
    subtotal     TEXT NOT NULL,
    total_amount TEXT NOT NULL,
    invoice_date TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'paid'))
);
CREATE INDEX user_invoices_by_user ON user_invoices (user_id, invoice_date);

-- event_id, user_id, thread_id, message_id and occurred_at copy the event's columns
-- (written together by the store, in one transaction): no FKs or indexes on them beyond
-- event_id, so the write path stays short; reads filter through api_events.
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
CREATE INDEX user_invoice_line_item_by_event ON user_invoice_line_item (event_id);
-- Partial: lines are written uninvoiced, so the write path never touches this index.
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
CREATE INDEX resource_invoice_line_item_by_event ON resource_invoice_line_item (event_id);
CREATE INDEX resource_invoice_line_item_by_invoice ON resource_invoice_line_item (invoice_id) WHERE invoice_id IS NOT NULL;
