-- Provider ids are unique per direction: an id a provider gave an inbound message and one it
-- gave an outbound message live in different namespaces (a provider's ids for what it
-- delivered to us and for what it accepted from us need not be disjoint), so a collision
-- between them can no longer leave an accepted send unrecordable.
DROP INDEX messages_provider_id;
CREATE UNIQUE INDEX messages_provider_id ON messages (org_id, channel, direction, provider_message_id);

-- API keys: what each is for, and when it was last used (to the minute).
ALTER TABLE api_keys ADD COLUMN label TEXT;
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
