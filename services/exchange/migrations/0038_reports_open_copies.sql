-- migration: no transaction
-- The overdue and stalled reports read every copy with a due date, or every acknowledged copy
-- ever, each with a probe of its statuses, to find the few not answered or not registered
-- (docs/perf/README.md, "The reports bounded"). A copy now keeps what they look for: its
-- document's due date (written with the copy, postgres._copies_sql; NULL: none), when it was
-- answered (its first 02 or 06) and when registered (its first 02 or 03), both written with the
-- status (postgres_lifecycle.insert_status). Each report reads its copies from one index, those
-- not answered (NULL) or answered after the report's time: the hub's open copies, not its history.
--
-- Outside a transaction (postgres.NO_TRANSACTION); each statement may run again if the migration
-- is interrupted (the backfills only lower a time or fill a NULL).
ALTER TABLE exchange.delivery ADD COLUMN IF NOT EXISTS due_date date;
ALTER TABLE exchange.delivery ADD COLUMN IF NOT EXISTS answered_at timestamptz;
ALTER TABLE exchange.delivery ADD COLUMN IF NOT EXISTS registered_at timestamptz;

-- A process of the previous version stores copies without their due date until the upgrade is
-- over: those accepted after the backfill below read their document are walked by a housekeeping
-- job (service_layer/copy_due_dates.py) from the migration's start (less a minute: a copy's
-- transaction commits a little after its accepted_at), where it has walked to kept here.
CREATE TABLE IF NOT EXISTS exchange.copy_due_date_walk (
    one       boolean     PRIMARY KEY DEFAULT true CHECK (one),
    began_at  timestamptz NOT NULL,
    walked_to timestamptz NOT NULL
);
INSERT INTO exchange.copy_due_date_walk (began_at, walked_to)
VALUES (now() - interval '1 minute', now() - interval '1 minute')
ON CONFLICT (one) DO NOTHING;

-- The copies stored before: their documents' due dates, a thousand documents a transaction.
-- Before the indexes, so that these updates may be HOT (and the builds read the final values).
DO $$
DECLARE
    done_to uuid := '00000000-0000-0000-0000-000000000000';
    upto uuid;
BEGIN
    LOOP
        SELECT b.uuid INTO upto FROM (
            SELECT uuid FROM exchange.document WHERE uuid > done_to ORDER BY uuid LIMIT 1000
        ) b ORDER BY b.uuid DESC LIMIT 1;
        EXIT WHEN upto IS NULL;
        UPDATE exchange.delivery d SET due_date = (doc.header ->> 'due_date')::date
        FROM exchange.document doc
        WHERE doc.uuid > done_to AND doc.uuid <= upto AND doc.header ->> 'due_date' IS NOT NULL
            AND d.document_uuid = doc.uuid AND d.due_date IS DISTINCT FROM
                (doc.header ->> 'due_date')::date;
        COMMIT;
        done_to := upto;
    END LOOP;
END
$$;

-- And their answers and registrations, from the statuses recorded before, 5,000 statuses a
-- transaction (least: a status the new code recorded meanwhile may be earlier or later).
DO $$
DECLARE
    done_to bigint := 0;
    last_id bigint := (SELECT max(id) FROM exchange.delivery_status);
BEGIN
    WHILE done_to < last_id LOOP
        UPDATE exchange.delivery d
        SET answered_at = least(d.answered_at, s.answered_at),
            registered_at = least(d.registered_at, s.registered_at)
        FROM (
            SELECT delivery_id,
                min(occurred_at) FILTER (WHERE code IN ('02', '06')) AS answered_at,
                min(occurred_at) FILTER (WHERE code IN ('02', '03')) AS registered_at
            FROM exchange.delivery_status
            WHERE id > done_to AND id <= done_to + 5000 AND code IN ('02', '03', '06')
            GROUP BY delivery_id
        ) s
        WHERE d.id = s.delivery_id
            AND (d.answered_at IS DISTINCT FROM least(d.answered_at, s.answered_at)
                OR d.registered_at IS DISTINCT FROM least(d.registered_at, s.registered_at));
        COMMIT;
        done_to := done_to + 5000;
    END LOOP;
END
$$;

-- The copies with a due date, by their answer: NULL (not answered) first read by the overdue
-- report, then those answered after its time. A copy with a due date enters it when stored and
-- again at each change of its state (as every index of the copies whose predicate it meets); a
-- copy without one, as the delivery path's are unless the sender gives a due date, never.
DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_answer_due;
CREATE INDEX CONCURRENTLY delivery_answer_due ON exchange.delivery (answered_at)
    WHERE due_date IS NOT NULL AND state NOT IN ('withdrawn', 'failed');

-- The acknowledged copies, by their registration: NULL (not registered) first read by the
-- stalled-steps report, then those registered after its time. Every copy enters it when
-- acknowledged: one index entry more in the acknowledgement's UPDATE.
DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_registration;
CREATE INDEX CONCURRENTLY delivery_registration ON exchange.delivery (registered_at)
    WHERE state = 'acknowledged';
