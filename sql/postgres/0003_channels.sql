-- Channels beyond plain SMS (WhatsApp, Telnyx): what kind of message it is and its structured
-- part, the message it replies or reacts to, attachments downloaded from the provider, the
-- customer-service window per contact address, and status reports that arrive before the
-- acceptance of the send they name. Timestamps are Unix milliseconds.

ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'text';
ALTER TABLE messages ADD COLUMN content TEXT;
ALTER TABLE messages ADD COLUMN reply_to_provider_id TEXT;
ALTER TABLE messages ADD COLUMN reply_to_message_id TEXT;
ALTER TABLE message_history ADD COLUMN error_message TEXT;
ALTER TABLE message_history ADD COLUMN details TEXT;

-- The window a provider allows free-form replies in (WhatsApp: 24 h after the customer's
-- last message), per org, channel and contact address.
CREATE TABLE service_windows (
    org_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    closes_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, channel, address)
);

-- Attachments of inbound messages that the provider only keeps for a while: downloaded by the
-- media worker, size-capped, kept with their hash and type.
CREATE TABLE media (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    message_id TEXT NOT NULL REFERENCES messages(id),
    channel TEXT NOT NULL,
    provider TEXT NOT NULL,
    reference TEXT NOT NULL,
    content_type TEXT NOT NULL,
    filename TEXT,
    caption TEXT,
    provider_sha256 TEXT,
    status TEXT NOT NULL,
    sha256 TEXT,
    size BIGINT,
    data BYTEA,
    error TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX media_message ON media (org_id, message_id);
CREATE INDEX media_due ON media (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- A status report for a provider id we do not know yet (it beat the commit of its send's
-- acceptance): kept, acknowledged, and applied when the acceptance commits.
CREATE TABLE pending_statuses (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    report TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX pending_statuses_id ON pending_statuses (org_id, channel, provider_message_id);
CREATE INDEX pending_statuses_age ON pending_statuses (received_at);
