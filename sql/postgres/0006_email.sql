-- Email: the cursor of each IMAP mailbox (its UIDVALIDITY and the highest UID whose message is
-- committed and flagged \Seen), and the messages a mailbox could not store, each with its
-- reason (so a hostile message is reported once and never stalls the mailbox).
-- A mailbox is keyed by user, server and folder: a changed server or folder is another one.
-- Timestamps are Unix milliseconds.

CREATE TABLE email_mailboxes (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    mailbox TEXT NOT NULL,
    uid_validity BIGINT NOT NULL,
    last_uid BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, mailbox)
);

CREATE TABLE email_rejects (
    org_id TEXT NOT NULL REFERENCES orgs(id),
    mailbox TEXT NOT NULL,
    uid_validity BIGINT NOT NULL,
    uid BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, mailbox, uid_validity, uid)
);

-- Threading looks a reply's parents up by Message-ID among the contact's messages; the
-- unique index messages_provider_id (org_id, channel, provider_message_id) serves it.
