-- The per-sender send rate shared by every node (issue 15: each node applied the full rate,
-- so N nodes sent N times faster than a provider allows one number). One row per sender key
-- (a provider account's number or address, not an org: two orgs configured with one number
-- share the provider's limit), holding the theoretical arrival time of its next send (GCRA),
-- in microseconds since the epoch.
CREATE TABLE sender_pace (
    sender_key TEXT PRIMARY KEY,
    tat_us BIGINT NOT NULL
);
