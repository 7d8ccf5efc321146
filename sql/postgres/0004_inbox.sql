-- Universal Inbox: agents and their sessions (tokens stored as SHA-256, passwords as argon2),
-- conversation assignment and per-agent read marks, idempotent WebSocket commands, merged
-- contacts, and full-text search over message bodies (a tsvector expression index).
-- Timestamps are Unix milliseconds.

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    online_until BIGINT NOT NULL DEFAULT 0,
    last_assigned_at BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX agents_org ON agents (org_id);

CREATE TABLE agent_sessions (
    token_hash TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    org_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX agent_sessions_agent ON agent_sessions (agent_id);

ALTER TABLE conversations ADD COLUMN assignee_id TEXT;
ALTER TABLE conversations ADD COLUMN assigned_at BIGINT;
CREATE INDEX conversations_assignee ON conversations (org_id, assignee_id, status);

ALTER TABLE contacts ADD COLUMN merged_into TEXT;

CREATE TABLE conversation_reads (
    org_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    read_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, conversation_id)
);

CREATE TABLE inbox_commands (
    org_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, client_id)
);

-- The 'simple' configuration (no stemming) matches what SQLite's FTS5 tokenizer does.
CREATE INDEX messages_body_fts ON messages USING GIN (to_tsvector('simple', body));
