-- Provider usage import (issue 14): connections to the providers' organization reports,
-- import runs, what each imported bucket became, provider-reported costs and the audit
-- trail of revised buckets.

-- A connection: one provider organization, its admin key encrypted (AES-256-GCM with
-- TALLY_ENCRYPTION_KEY, a fresh 96-bit nonce per value); only the last 4 characters are
-- kept in clear, for the masked display.
CREATE TABLE provider_connections (
    connection_id  BLOB PRIMARY KEY NOT NULL,
    provider       TEXT NOT NULL CHECK (provider IN ('anthropic', 'openai')),
    name           TEXT NOT NULL UNIQUE,
    base_url       TEXT NOT NULL,
    key_ciphertext BLOB NOT NULL,
    key_nonce      BLOB NOT NULL,
    key_hint       TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    last_run_at    INTEGER,
    last_status    TEXT,
    last_error     TEXT,
    enabled        BOOLEAN NOT NULL
);

-- One import run: what it asked for, what it found and did. Counts are final when
-- finished_at is set; a failed run imported nothing. skipped: revisions refused (the earlier
-- event was invoiced) plus buckets Tally could not price, each named in error.
CREATE TABLE import_runs (
    run_id             BLOB PRIMARY KEY NOT NULL,
    connection_id      BLOB NOT NULL REFERENCES provider_connections (connection_id) ON DELETE CASCADE,
    run_trigger        TEXT NOT NULL CHECK (run_trigger IN ('schedule', 'manual', 'backfill')),
    range_from         INTEGER NOT NULL,
    range_to           INTEGER NOT NULL,
    started_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    status             TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    pages              BIGINT NOT NULL,
    buckets            BIGINT NOT NULL,
    events_new         BIGINT NOT NULL,
    events_revised     BIGINT NOT NULL,
    events_unchanged   BIGINT NOT NULL,
    skipped            BIGINT NOT NULL,
    costs              BIGINT NOT NULL,
    error              TEXT
);
CREATE INDEX import_runs_by_connection ON import_runs (connection_id, started_at);

-- Costs as the provider reported them, per day and natural key ('' for a missing model,
-- description or workspace): a re-import replaces the amount, never adds to it.
CREATE TABLE provider_costs (
    connection_id BLOB NOT NULL REFERENCES provider_connections (connection_id) ON DELETE CASCADE,
    starting_at   INTEGER NOT NULL,
    ending_at     INTEGER NOT NULL,
    model         TEXT NOT NULL,
    description   TEXT NOT NULL,
    workspace_id  TEXT NOT NULL,
    amount        TEXT NOT NULL,
    currency      TEXT NOT NULL,
    imported_at   INTEGER NOT NULL,
    PRIMARY KEY (connection_id, starting_at, model, description, workspace_id)
);

-- What each provider bucket x group became: keyed by the bucket's deterministic id
-- (provider, bucket start, group), it names the usage event currently standing for it
-- (revision 0: the same id; a revised bucket gets a new event id per revision) and the hash
-- of the content that event was made from. Kept when a connection is deleted: the events
-- stay billed, and a re-created connection must not bill them again.
CREATE TABLE imported_buckets (
    event_id         BLOB PRIMARY KEY NOT NULL,
    connection_id    BLOB NOT NULL,
    starting_at      INTEGER NOT NULL,
    group_key        TEXT NOT NULL,
    content_hash     TEXT NOT NULL,
    revision         BIGINT NOT NULL,
    current_event_id BLOB NOT NULL,
    imported_at      INTEGER NOT NULL
);
CREATE INDEX imported_buckets_by_start ON imported_buckets (connection_id, starting_at);

-- Audit trail of revised buckets: the event replaced and its replacement, both contents.
-- status 'applied', or 'refused' when the earlier event was already invoiced (it is then
-- kept as it was, and new_event_id names the event that was not written).
CREATE TABLE import_revisions (
    revision_id     BLOB PRIMARY KEY NOT NULL,
    run_id          BLOB,
    bucket_event_id BLOB NOT NULL,
    old_event_id    BLOB NOT NULL,
    new_event_id    BLOB NOT NULL,
    revision        BIGINT NOT NULL,
    starting_at     INTEGER NOT NULL,
    group_key       TEXT NOT NULL,
    old_hash        TEXT NOT NULL,
    new_hash        TEXT NOT NULL,
    old_quantities  TEXT NOT NULL,
    new_quantities  TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('applied', 'refused')),
    reason          TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX import_revisions_by_bucket ON import_revisions (bucket_event_id, at);
