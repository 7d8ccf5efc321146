-- Outbound messages created per org per UTC day through the API and the inbox, counted against
-- org_settings.messages_per_day in the transaction that creates each message (issue 15: the
-- old check counted the day's rows before the insert, so racing sends could pass the cap).
-- Rows older than a week are swept when an org's next day starts.
CREATE TABLE message_days (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    day BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    PRIMARY KEY (org_id, day)
);
