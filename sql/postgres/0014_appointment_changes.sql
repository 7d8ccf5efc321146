-- Callers cancel and move their appointments (issue 10): a cancelled or rescheduled
-- appointment keeps its row (and its history) but no longer holds its slot, so the unique
-- start is enforced among booked appointments only.
DROP INDEX appointments_slot;
CREATE UNIQUE INDEX appointments_slot ON appointments (org_id, starts_at) WHERE status = 'booked';
