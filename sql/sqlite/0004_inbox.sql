-- Universal Inbox: agents and their sessions (tokens stored as SHA-256, passwords as argon2),
-- conversation assignment and per-agent read marks, idempotent WebSocket commands, merged
-- contacts, and full-text search over message bodies (FTS5). Timestamps are Unix milliseconds.

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

-- Its own copy of each body (not external content: a VACUUM may renumber the rowids of a table
-- whose key is TEXT, which would point an external-content index at the wrong rows).
CREATE VIRTUAL TABLE messages_fts USING fts5(body, message_id UNINDEXED, org_id UNINDEXED);
INSERT INTO messages_fts (body, message_id, org_id) SELECT body, id, org_id FROM messages;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (body, message_id, org_id) VALUES (new.body, new.id, new.org_id);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE message_id = old.id;
END;
