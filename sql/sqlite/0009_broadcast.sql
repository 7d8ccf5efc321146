-- Broadcast alerts. A broadcast keeps its checked rules (`spec`, JSON: the ladder, ack,
-- quiet hours) and the counts of its recipients by state, moved in the same transaction as
-- each recipient. `link_key` signs the email step's confirm links.
CREATE TABLE broadcasts (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash TEXT NOT NULL,
    link_key TEXT NOT NULL,
    chunks BIGINT NOT NULL,
    chunks_expanded BIGINT NOT NULL DEFAULT 0,
    recipients BIGINT NOT NULL,
    n_pending BIGINT NOT NULL DEFAULT 0,
    n_sent BIGINT NOT NULL DEFAULT 0,
    n_confirmed BIGINT NOT NULL DEFAULT 0,
    n_not_confirmed BIGINT NOT NULL DEFAULT 0,
    n_unreachable BIGINT NOT NULL DEFAULT 0,
    n_opted_out BIGINT NOT NULL DEFAULT 0,
    n_late_confirmed BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE UNIQUE INDEX broadcasts_idempotency ON broadcasts (org_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX broadcasts_org ON broadcasts (org_id, created_at);
CREATE INDEX broadcasts_expanding ON broadcasts (created_at) WHERE chunks_expanded < chunks;

-- The audience as posted, in chunks the engine expands one transaction at a time (so a
-- 100,000-person POST commits quickly and expansion never holds the writer for long).
CREATE TABLE broadcast_chunks (
    broadcast_id TEXT NOT NULL REFERENCES broadcasts(id),
    idx BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (broadcast_id, idx)
);

-- One row per person: the recipient machine's state, the last rung sent and when, and when
-- the engine must look at it again (`next_at`; NULL: never).
CREATE TABLE broadcast_recipients (
    id TEXT PRIMARY KEY,
    broadcast_id TEXT NOT NULL REFERENCES broadcasts(id),
    org_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    phone TEXT,
    email TEXT,
    name TEXT,
    tz TEXT,
    vars TEXT,
    state TEXT NOT NULL,
    last_step BIGINT,
    last_sent_at BIGINT,
    first_sent_at BIGINT,
    message_id TEXT,
    delivered_any BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT,
    confirmed_at BIGINT,
    confirmed_via TEXT,
    confirmed_step BIGINT,
    late_confirmed_at BIGINT,
    updated_at BIGINT NOT NULL,
    UNIQUE (broadcast_id, idx)
);
CREATE INDEX broadcast_recipients_due ON broadcast_recipients (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX broadcast_recipients_open ON broadcast_recipients (broadcast_id, next_at);
CREATE INDEX broadcast_recipients_phone ON broadcast_recipients (org_id, phone, state);
CREATE INDEX broadcast_recipients_message ON broadcast_recipients (message_id);

-- Every rung per recipient: queued as a message, or passed over and why.
CREATE TABLE broadcast_sends (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    broadcast_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    step BIGINT NOT NULL,
    channel TEXT NOT NULL,
    message_id TEXT,
    skipped TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX broadcast_sends_broadcast ON broadcast_sends (broadcast_id, step);

-- Broadcast messages wait in the send queue behind conversation messages (0: a person is
-- waiting on it; 1: bulk).
ALTER TABLE messages ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
CREATE INDEX messages_due_priority ON messages (priority, next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

-- Per-org caps for broadcasts.
ALTER TABLE org_settings ADD COLUMN broadcasts_per_day BIGINT;
ALTER TABLE org_settings ADD COLUMN broadcast_recipients BIGINT;
