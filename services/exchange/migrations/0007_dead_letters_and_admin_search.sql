-- Finite delivery: a copy pushed DOCAXIS_MAX_PUSHES times without an acknowledgement becomes
-- 'dead_lettered' (terminal) until an administrator resends it; both are audited.
ALTER TABLE exchange.delivery
    ADD COLUMN dead_lettered_at   timestamptz,
    ADD COLUMN dead_letter_reason text;

-- Administrators' resends, with the clear text the ledger only commits to (hashes there).
CREATE TABLE exchange.delivery_resend (
    id                    bigserial   PRIMARY KEY,
    delivery_id           uuid        NOT NULL REFERENCES exchange.delivery (id),
    resent_at             timestamptz NOT NULL,
    administrator_subject text        NOT NULL,
    administrator_serial  text        NOT NULL,
    reason                text        NOT NULL,
    -- The dead letter it undid.
    dead_lettered_at      timestamptz NOT NULL,
    dead_letter_reason    text        NOT NULL,
    push_count            integer     NOT NULL
);

CREATE INDEX delivery_resend_by_delivery ON exchange.delivery_resend (delivery_id, resent_at);

-- ListDeadLetters pages through dead letters newest first.
CREATE INDEX delivery_dead_lettered ON exchange.delivery (dead_lettered_at DESC, id DESC)
    WHERE state = 'dead_lettered';

-- SearchDocuments: newest first overall or per sender (keyset on submitted_at, uuid), by number
-- and notation, and copies by the code the sender wrote (the effective recipient is served by
-- delivery_inbox).
CREATE INDEX document_sender_submitted ON exchange.document (sender, submitted_at, uuid);
CREATE INDEX document_code ON exchange.document
    ((header ->> 'code_number'), (header ->> 'code_notation'));
CREATE INDEX delivery_requested_recipient ON exchange.delivery (requested_recipient);
