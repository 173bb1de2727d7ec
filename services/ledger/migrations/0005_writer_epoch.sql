-- The sequencer's fencing token (issue 13: several replicas, one sequencer). Each writer that
-- becomes leader increments it, and every batch and checkpoint checks it under this row's lock
-- before writing: a former leader that has not noticed it lost its advisory lock finds a newer
-- epoch and stops, instead of appending beside the new leader.
ALTER TABLE ledger.tree_state ADD COLUMN writer_epoch bigint NOT NULL DEFAULT 0;
