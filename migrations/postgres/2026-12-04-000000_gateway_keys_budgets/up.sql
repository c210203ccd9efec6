-- The gateway: virtual keys, budgets per key or user and period, the calls made through
-- the gateway (one row per call, keyed by its usage event id; cost comes from api_events
-- by that id, so money lives in one place), and the durable "alert sent" marks.
CREATE TABLE virtual_keys (
    key_id         UUID PRIMARY KEY NOT NULL,
    public_id      TEXT NOT NULL UNIQUE,
    secret_hash    TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES dim_users (user_id),
    name           TEXT NOT NULL,
    allowed_models TEXT,
    expires_at     TIMESTAMPTZ,
    rpm_limit      BIGINT,
    created_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ
);
CREATE INDEX virtual_keys_by_user ON virtual_keys (user_id, created_at);

CREATE TABLE budgets (
    budget_id       UUID PRIMARY KEY NOT NULL,
    scope           TEXT NOT NULL CHECK (scope IN ('key', 'user')),
    scope_id        TEXT NOT NULL,
    period          TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly')),
    max_budget      NUMERIC NOT NULL,
    alert_threshold NUMERIC,
    timezone        TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (scope, scope_id, period)
);

CREATE TABLE gateway_requests (
    event_id            UUID PRIMARY KEY NOT NULL,
    key_id              UUID NOT NULL,
    user_id             TEXT NOT NULL,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    route               TEXT NOT NULL,
    status              TEXT NOT NULL,
    http_status         INTEGER NOT NULL,
    latency_ms          BIGINT NOT NULL,
    upstream_request_id TEXT,
    simulated           BOOLEAN NOT NULL,
    total_tokens        BIGINT NOT NULL,
    occurred_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX gateway_requests_by_key ON gateway_requests (key_id, occurred_at);
CREATE INDEX gateway_requests_by_user ON gateway_requests (user_id, occurred_at);

CREATE TABLE budget_alerts (
    budget_id    UUID NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    spent        NUMERIC NOT NULL,
    sent_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (budget_id, window_start)
);
