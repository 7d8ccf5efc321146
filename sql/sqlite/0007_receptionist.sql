-- The AI receptionist (issue 10): per-org settings, the knowledge base it answers from, and
-- the appointments it books. Times are Unix ms (UTC); `local_start` keeps the wall-clock
-- time the caller agreed to, in the org's time zone at booking.

CREATE TABLE receptionist_settings (
    org_id TEXT PRIMARY KEY REFERENCES orgs(id),
    greeting TEXT,
    hours TEXT,
    timezone TEXT,
    agent TEXT,
    appointment_minutes BIGINT NOT NULL DEFAULT 30,
    updated_at BIGINT NOT NULL
);

CREATE TABLE kb_entries (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX kb_entries_org ON kb_entries (org_id, created_at);

-- One booking per org and start: two callers racing for a slot, one wins.
CREATE TABLE appointments (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    conversation_id TEXT,
    call_id TEXT,
    caller TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    local_start TEXT NOT NULL,
    timezone TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX appointments_slot ON appointments (org_id, starts_at);
