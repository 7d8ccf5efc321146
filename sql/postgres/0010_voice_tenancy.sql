-- Agents belong to an org: two orgs may each have an agent `alice` (issue 9). New agents'
-- HA1 is made in their org's realm (the org's slug); existing rows keep the realm they
-- were made in until `voice agent add` resets them.
ALTER TABLE sip_agents DROP CONSTRAINT sip_agents_pkey;
ALTER TABLE sip_agents ADD PRIMARY KEY (org_id, username);
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
