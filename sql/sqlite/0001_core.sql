-- Durable core: organizations, keys, channel accounts, contacts, conversations, messages,
-- delivery history, opt-outs, the transactional outbox and dead letters.
-- Timestamps are Unix milliseconds (BIGINT) so SQLite and PostgreSQL share one code path.

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    next_seq BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE channel_accounts (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    provider TEXT NOT NULL,
    channel TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (org_id, provider)
);

CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE contact_identities (
    org_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, channel, address)
);

CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_message_at BIGINT NOT NULL,
    UNIQUE (org_id, contact_id)
);
CREATE INDEX conversations_recent ON conversations (org_id, last_message_at);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    contact_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    direction TEXT NOT NULL,
    provider_message_id TEXT,
    from_addr TEXT NOT NULL,
    to_addr TEXT NOT NULL,
    body TEXT NOT NULL,
    media TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_provider_id ON messages (org_id, channel, provider_message_id);
CREATE UNIQUE INDEX messages_idempotency ON messages (org_id, idempotency_key);
CREATE INDEX messages_conversation ON messages (org_id, conversation_id, created_at);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

CREATE TABLE message_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    event TEXT NOT NULL,
    reported TEXT,
    state TEXT NOT NULL,
    applied BIGINT NOT NULL,
    provider_status TEXT,
    error_code TEXT,
    source TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX message_history_message ON message_history (message_id, id);

CREATE TABLE opt_outs (
    org_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, channel, address)
);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    seq BIGINT,
    partition_key TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    time BIGINT NOT NULL,
    data TEXT NOT NULL,
    published_at BIGINT
);
CREATE UNIQUE INDEX outbox_org_seq ON outbox (org_id, seq);
CREATE INDEX outbox_unsequenced ON outbox (id) WHERE seq IS NULL;
CREATE INDEX outbox_unpublished ON outbox (org_id, seq) WHERE published_at IS NULL;

CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    channel TEXT NOT NULL,
    error TEXT NOT NULL,
    error_code TEXT,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    replayed_at BIGINT,
    replay_message_id TEXT
);
CREATE INDEX dead_letters_org ON dead_letters (org_id, created_at);
