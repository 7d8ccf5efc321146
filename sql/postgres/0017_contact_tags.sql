-- Tags on contacts (issue 14): a broadcast's audience can be "everyone tagged night-shift".
CREATE TABLE contact_tags (
    org_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, tag, contact_id)
);
CREATE INDEX contact_tags_contact ON contact_tags (contact_id);
