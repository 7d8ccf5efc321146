-- Agents belong to an org: two orgs may each have an agent `alice` (issue 9). New agents'
-- HA1 is made in their org's realm (the org's slug); existing rows keep the realm they
-- were made in until `voice agent add` resets them. SQLite cannot change a primary key in
-- place: the table is rebuilt.
CREATE TABLE sip_agents_new (
    username TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    realm TEXT NOT NULL,
    ha1 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, username)
);
INSERT INTO sip_agents_new (username, org_id, realm, ha1, created_at, updated_at)
    SELECT username, org_id, realm, ha1, created_at, updated_at FROM sip_agents;
DROP TABLE sip_agents;
ALTER TABLE sip_agents_new RENAME TO sip_agents;
CREATE INDEX sip_agents_username ON sip_agents (username);

-- Registrations in the database, so a call on any node reaches an agent registered on
-- another. One row per contact; expired rows are ignored and swept by later REGISTERs.
CREATE TABLE sip_registrations (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    source TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, username, contact)
);
