-- Status notices for an agency that is not listening are coalesced (services/exchange/domain/
-- notices.py): one the agency has not been handed yet is settled by the next status notice of
-- the same copy, which names it here.
ALTER TABLE exchange.notice
    ADD COLUMN coalesced_into uuid REFERENCES exchange.notice (id);

-- Finds the copy's notice not yet handed over when a new status arrives.
CREATE INDEX notice_unhanded ON exchange.notice (agency, delivery_id)
    WHERE acknowledged_at IS NULL AND pushed_at IS NULL;
