-- Voice: which dialled number (DID) reaches which org and application, the SIP credentials
-- of agent phones (digest HA1 only, never the password), and every call with its persisted
-- state history. Timestamps are Unix milliseconds.

CREATE TABLE voice_routes (
    number TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    app TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX voice_routes_org ON voice_routes (org_id);

CREATE TABLE sip_agents (
    username TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    realm TEXT NOT NULL,
    ha1 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sip_agents_org ON sip_agents (org_id);

CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    sip_call_id TEXT NOT NULL,
    from_uri TEXT NOT NULL,
    to_number TEXT NOT NULL,
    app TEXT NOT NULL,
    state TEXT NOT NULL,
    cause TEXT,
    started_at BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX calls_org ON calls (org_id, started_at);
CREATE INDEX calls_sip_call_id ON calls (sip_call_id);

CREATE TABLE call_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(id),
    org_id TEXT NOT NULL,
    state TEXT NOT NULL,
    event TEXT NOT NULL,
    cause TEXT,
    detail TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX call_history_call ON call_history (call_id, id);
