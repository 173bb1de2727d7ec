-- When each event was staged, so that the sequencer's lag (docaxis_ledger_lag_seconds) is the
-- age of the oldest event still waiting. occurred_at cannot say: it is the event's own time,
-- which a DMS may report long after the fact (status reports carry the DMS's timestamps).
ALTER TABLE ledger.pending ADD COLUMN staged_at timestamptz NOT NULL DEFAULT now();
