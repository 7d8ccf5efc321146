-- Voice on a public address: every call records the gateway node that runs it, so a node
-- that restarts after a crash ends the calls it left live (cause `interrupted`) and no other
-- node's.

ALTER TABLE calls ADD COLUMN node TEXT;
CREATE INDEX calls_live_node ON calls (node, state);

-- Per route: the agent the application's transfer (menu key 1) goes to, and whether the
-- caller may transfer itself with REFER (1) or gets 403 (0, the default).
ALTER TABLE voice_routes ADD COLUMN agent TEXT;
ALTER TABLE voice_routes ADD COLUMN allow_refer BIGINT NOT NULL DEFAULT 0;
