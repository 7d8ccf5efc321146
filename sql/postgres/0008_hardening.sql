-- Provider ids are unique per direction: an id a provider gave an inbound message and one it
-- gave an outbound message live in different namespaces (a provider's ids for what it
-- delivered to us and for what it accepted from us need not be disjoint), so a collision
-- between them can no longer leave an accepted send unrecordable.
DROP INDEX messages_provider_id;
CREATE UNIQUE INDEX messages_provider_id ON messages (org_id, channel, direction, provider_message_id);

-- API keys: what each is for, and when it was last used (to the minute).
ALTER TABLE api_keys ADD COLUMN label TEXT;
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;

-- Signed outbound webhooks (Standard Webhooks): per-org endpoints that receive every event
-- in the org's sequence order. `cursor_seq` is the last event delivered (or dead-lettered);
-- `attempts`/`retry_at` the failing head event's retries; `lease_*` which node delivers now.
-- During a rotation the previous secret signs too, until `previous_until`.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until BIGINT,
    cursor_seq BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    retry_at BIGINT,
    last_error TEXT,
    lease_node TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id);

-- Events an endpoint kept refusing; replayed on request.
CREATE TABLE webhook_dead_letters (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id),
    org_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    error TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    replay_requested_at BIGINT,
    replayed_at BIGINT
);
CREATE INDEX webhook_dead_letters_endpoint ON webhook_dead_letters (endpoint_id, replay_requested_at);
