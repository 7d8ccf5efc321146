-- AI turns answered per org per clock hour (UTC), counted against org_settings.ai_turns_per_hour
-- (issue 15). Rows older than a day are swept when an org's next hour starts.
CREATE TABLE ai_turns (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    hour BIGINT NOT NULL,
    turns BIGINT NOT NULL,
    PRIMARY KEY (org_id, hour)
);
