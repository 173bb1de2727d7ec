-- Business statuses per delivery, notices (statuses for senders, recalls for recipients) and
-- recall state. Statuses keep the reporter's own timestamp; the history is ordered by it.
CREATE TABLE exchange.delivery_status (
    id          bigserial   PRIMARY KEY,
    delivery_id uuid        NOT NULL REFERENCES exchange.delivery (id),
    status_id   text        NOT NULL,
    code        text        NOT NULL CHECK (code IN ('01', '02', '03', '04', '05', '06',
                                                     '13', '15', '16')),
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    description text        NOT NULL DEFAULT '',
    staff       jsonb       NOT NULL DEFAULT '{}',
    reported_by text        NOT NULL,
    -- The two idempotency keys of a report: its own id, and what it says happened when.
    CONSTRAINT one_status_id UNIQUE (delivery_id, status_id),
    CONSTRAINT one_status_event UNIQUE (delivery_id, code, occurred_at)
);

-- Items for an agency's DMS other than documents, delivered like documents until acknowledged.
CREATE TABLE exchange.notice (
    id              uuid        PRIMARY KEY,
    agency          text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('status', 'recall')),
    delivery_id     uuid        NOT NULL REFERENCES exchange.delivery (id),
    status_row      bigint      REFERENCES exchange.delivery_status (id),
    created_at      timestamptz NOT NULL,
    pushed_at       timestamptz,
    push_count      integer     NOT NULL DEFAULT 0,
    acknowledged_at timestamptz,
    CHECK ((kind = 'status') = (status_row IS NOT NULL))
);

CREATE INDEX notice_pending ON exchange.notice (agency, created_at, id)
    WHERE acknowledged_at IS NULL;
CREATE INDEX delivery_pending ON exchange.delivery (recipient, accepted_at, id)
    WHERE state IN ('accepted', 'queued', 'pushed');

ALTER TABLE exchange.delivery
    ADD COLUMN recall_state        text CHECK (recall_state IN
                                               ('pending', 'agreed', 'refused', 'withdrawn')),
    ADD COLUMN recall_reason       text NOT NULL DEFAULT '',
    ADD COLUMN recall_requested_at timestamptz,
    ADD COLUMN recall_answered_at  timestamptz;
