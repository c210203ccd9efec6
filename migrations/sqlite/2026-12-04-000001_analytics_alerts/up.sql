-- Analytics, budget alerts, forecasts, price verification and the scheduler.

-- Events carry the gateway key they were made with, a task label and whether the call
-- succeeded (seed 003's was_successful).
ALTER TABLE api_events ADD COLUMN key_id BLOB;
ALTER TABLE api_events ADD COLUMN task TEXT;
ALTER TABLE api_events ADD COLUMN successful BOOLEAN NOT NULL DEFAULT 1;

-- Daily rollups, written in the same transaction as the events they count (only for
-- events newly stored, so a replay counts nothing). One row per grain x UTC day x user x
-- model x key ('' for none) x task ('' for none) x kind. The grain says which dimensions
-- the row keeps: 'full' keeps all, 'model', 'user', 'key' and 'task' keep one and mask the
-- others ('*', model -1), so a query reads the smallest grain that has its dimensions.
-- Each event is counted twice per grain: in its day's row (span 'd') and in its month's row
-- (span 'm', day = the month's first day), so a range reads month rows for the whole months
-- it covers and day rows only for the days at its ends. In the key the month leads, then the
-- dimensions, and the day ends it: a grouped query reads its rows in group order within each
-- month (no sort), a filter on a user, model, key or task seeks straight to them, and only
-- the months of the range are read. kind '' holds the event-level figures:
-- requests, failed requests and the events' exact cost total (amount); other kinds hold
-- the quantity and amount of that kind's lines. Money is TEXT (exact Decimal), so SQLite
-- sums it in Rust inside the write transaction, never in SQL.
CREATE TABLE usage_rollups (
    grain    TEXT NOT NULL,
    span     TEXT NOT NULL CHECK (span IN ('d', 'm')),
    month    INTEGER NOT NULL,
    day      INTEGER NOT NULL,
    user_id  TEXT NOT NULL,
    model_id INTEGER NOT NULL,
    key_id   TEXT NOT NULL,
    task     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    requests BIGINT NOT NULL,
    failed   BIGINT NOT NULL,
    quantity TEXT NOT NULL,
    amount   TEXT NOT NULL,
    PRIMARY KEY (grain, span, month, user_id, model_id, key_id, task, kind, day)
) WITHOUT ROWID;

-- Small key/value facts about the store itself (e.g. whether rollups were backfilled).
CREATE TABLE store_meta (
    meta_key   TEXT PRIMARY KEY NOT NULL,
    meta_value TEXT NOT NULL
);

-- Prompts and responses, stored only when the setting is on (off by default).
CREATE TABLE event_payloads (
    event_id   BLOB PRIMARY KEY NOT NULL,
    request    TEXT,
    response   TEXT,
    created_at INTEGER NOT NULL
);

-- Budget alerts (seed 003): spend limits over any scope with thresholds and channels.
CREATE TABLE alert_budgets (
    budget_id   BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    amount      TEXT NOT NULL,
    period      TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly')),
    scope_kind  TEXT NOT NULL CHECK (scope_kind IN ('all', 'provider', 'model', 'user', 'key')),
    scope_value TEXT,
    thresholds  TEXT NOT NULL,
    emails      TEXT NOT NULL,
    webhook_url TEXT,
    enabled     BOOLEAN NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Durable "fired" marks: one per budget, period window and threshold ('50', '80',
-- '100', 'projected'); the insert that wins sends, so several nodes fire once.
CREATE TABLE alert_marks (
    budget_id    BLOB NOT NULL,
    window_start INTEGER NOT NULL,
    threshold    TEXT NOT NULL,
    spent        TEXT NOT NULL,
    fired_at     INTEGER NOT NULL,
    PRIMARY KEY (budget_id, window_start, threshold)
);

-- Every alert delivery attempt series, with its status: the visible delivery log.
CREATE TABLE alert_deliveries (
    delivery_id BLOB PRIMARY KEY NOT NULL,
    source      TEXT NOT NULL,
    subject_id  TEXT,
    alert_kind  TEXT NOT NULL,
    channel     TEXT NOT NULL,
    target      TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX alert_deliveries_by_subject ON alert_deliveries (subject_id, created_at);
CREATE INDEX alert_deliveries_by_time ON alert_deliveries (created_at);

-- Fitted forecasts: what was fit, when, on which data, and the predicted points (JSON).
CREATE TABLE forecasts (
    forecast_id  BLOB PRIMARY KEY NOT NULL,
    scope        TEXT NOT NULL,
    trained_at   INTEGER NOT NULL,
    data_from    INTEGER NOT NULL,
    data_to      INTEGER NOT NULL,
    history_days INTEGER NOT NULL,
    horizon      INTEGER NOT NULL,
    method       TEXT NOT NULL,
    points       TEXT NOT NULL
);
CREATE INDEX forecasts_by_scope ON forecasts (scope, trained_at);

-- When each price version was last checked against the provider's list.
ALTER TABLE dim_token_pricing ADD COLUMN verified_at INTEGER;
ALTER TABLE dim_resource_pricing ADD COLUMN verified_at INTEGER;

-- The scheduler: one lease per job (one node runs it at a time) and the run history.
CREATE TABLE scheduler_leases (
    job_id      TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    lease_until INTEGER NOT NULL
);
CREATE TABLE scheduler_runs (
    run_id      BLOB PRIMARY KEY NOT NULL,
    job_id      TEXT NOT NULL,
    node        TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    status      TEXT NOT NULL,
    message     TEXT
);
CREATE INDEX scheduler_runs_by_job ON scheduler_runs (job_id, started_at);
CREATE INDEX scheduler_runs_by_time ON scheduler_runs (started_at);
