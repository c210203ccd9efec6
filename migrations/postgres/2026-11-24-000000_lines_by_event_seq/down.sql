-- Back to lines that copy their event's columns, and a message_tokens table.
DROP VIEW message_tokens;

CREATE TABLE message_tokens (
    token_id    UUID PRIMARY KEY NOT NULL,
    event_id    UUID NOT NULL REFERENCES api_events (event_id),
    message_id  UUID,
    token_type  TEXT NOT NULL,
    token_count BIGINT NOT NULL CHECK (token_count >= 0),
    created_at  TIMESTAMPTZ NOT NULL
);
INSERT INTO message_tokens
SELECT l.line_item_id, e.event_id, e.message_id, l.token_type, l.token_count, l.created_at
FROM user_invoice_line_item l JOIN api_events e ON e.event_seq = l.event_seq;

ALTER TABLE user_invoice_line_item
    ADD COLUMN event_id UUID, ADD COLUMN message_id UUID, ADD COLUMN thread_id UUID,
    ADD COLUMN user_id TEXT, ADD COLUMN token_id UUID, ADD COLUMN occurred_at TIMESTAMPTZ;
UPDATE user_invoice_line_item l
SET event_id = e.event_id, message_id = e.message_id, thread_id = e.thread_id, user_id = e.user_id,
    token_id = l.line_item_id, occurred_at = e.occurred_at
FROM api_events e WHERE e.event_seq = l.event_seq;
DROP INDEX user_invoice_line_item_by_event;
ALTER TABLE user_invoice_line_item
    ALTER COLUMN event_id SET NOT NULL, ALTER COLUMN user_id SET NOT NULL,
    ALTER COLUMN token_id SET NOT NULL, ALTER COLUMN occurred_at SET NOT NULL,
    ADD CONSTRAINT user_invoice_line_item_token_id_fkey FOREIGN KEY (token_id) REFERENCES message_tokens (token_id),
    DROP COLUMN event_seq, DROP COLUMN token_type, DROP COLUMN token_count;
CREATE INDEX user_invoice_line_item_by_event ON user_invoice_line_item (event_id);

ALTER TABLE resource_invoice_line_item
    ADD COLUMN event_id UUID, ADD COLUMN user_id TEXT, ADD COLUMN thread_id UUID,
    ADD COLUMN message_id UUID, ADD COLUMN occurred_at TIMESTAMPTZ;
UPDATE resource_invoice_line_item l
SET event_id = e.event_id, user_id = e.user_id, thread_id = e.thread_id, message_id = e.message_id,
    occurred_at = e.occurred_at
FROM api_events e WHERE e.event_seq = l.event_seq;
DROP INDEX resource_invoice_line_item_by_event;
ALTER TABLE resource_invoice_line_item
    ALTER COLUMN event_id SET NOT NULL, ALTER COLUMN user_id SET NOT NULL, ALTER COLUMN occurred_at SET NOT NULL,
    ADD CONSTRAINT resource_invoice_line_item_event_id_fkey FOREIGN KEY (event_id) REFERENCES api_events (event_id),
    ADD CONSTRAINT resource_invoice_line_item_user_id_fkey FOREIGN KEY (user_id) REFERENCES dim_users (user_id),
    DROP COLUMN event_seq;
CREATE INDEX resource_invoice_line_item_by_event ON resource_invoice_line_item (event_id);

ALTER TABLE api_events DROP COLUMN event_seq;
