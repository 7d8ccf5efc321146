-- Calls the gateway places (a broadcast's voice rung, issue 14) beside the calls it answers:
-- `outbound` calls' contact is the number dialled (`to_number`), their `from_uri` our caller id.
ALTER TABLE calls ADD COLUMN direction TEXT NOT NULL DEFAULT 'inbound';
