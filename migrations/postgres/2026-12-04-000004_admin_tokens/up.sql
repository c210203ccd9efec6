-- Admin tokens made with `tally admin-token create`: only a SHA-256 of the whole token is
-- stored; the public id finds the row. (TALLY_ADMIN_TOKEN, from the environment, is never stored.)
CREATE TABLE admin_tokens (
    token_id    UUID PRIMARY KEY NOT NULL,
    public_id   TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
