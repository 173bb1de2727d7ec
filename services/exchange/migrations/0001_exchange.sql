-- Documents, attachments, per-recipient deliveries and the outbox relayed to RabbitMQ.
CREATE SCHEMA IF NOT EXISTS exchange;

-- Attachment bytes, stored as ordered chunks so that neither upload nor download holds a whole
-- file in memory. A blob row exists only for a completed, verified upload.
CREATE TABLE exchange.blob (
    sha256      text        PRIMARY KEY,
    size        bigint      NOT NULL CHECK (size > 0),
    storage_id  uuid        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE exchange.blob_chunk (
    storage_id   uuid   NOT NULL,
    start_offset bigint NOT NULL,
    data         bytea  NOT NULL,
    PRIMARY KEY (storage_id, start_offset)
);

-- Who uploaded a blob: an agency may reference only content it proved it holds.
CREATE TABLE exchange.blob_owner (
    sha256 text NOT NULL REFERENCES exchange.blob (sha256),
    agency text NOT NULL,
    PRIMARY KEY (sha256, agency)
);

CREATE TABLE exchange.document (
    uuid           uuid        PRIMARY KEY,
    document_id    text        NOT NULL,
    sender         text        NOT NULL,
    consignment_id text        NOT NULL,
    fingerprint    text        NOT NULL,
    business_type  smallint    NOT NULL,
    header         jsonb       NOT NULL,
    submitted_at   timestamptz NOT NULL,
    CONSTRAINT one_consignment UNIQUE (sender, consignment_id)
);

-- A new document whose DocumentId exists is a duplicate; revoke/update/replace reuse the id.
CREATE UNIQUE INDEX document_new_id ON exchange.document (document_id) WHERE business_type = 0;
CREATE INDEX document_by_id ON exchange.document (document_id, submitted_at);

CREATE TABLE exchange.document_attachment (
    document_uuid uuid     NOT NULL REFERENCES exchange.document (uuid),
    position      smallint NOT NULL,
    name          text     NOT NULL,
    media_type    text     NOT NULL,
    size          bigint   NOT NULL,
    sha256        text     NOT NULL REFERENCES exchange.blob (sha256),
    description   text     NOT NULL DEFAULT '',
    PRIMARY KEY (document_uuid, position)
);

CREATE TABLE exchange.document_signature (
    document_uuid     uuid        NOT NULL REFERENCES exchange.document (uuid),
    position          smallint    NOT NULL,
    role              text        NOT NULL,
    algorithm         text        NOT NULL,
    value             bytea       NOT NULL,
    certificate_chain bytea[]     NOT NULL,
    signed_at         timestamptz,
    PRIMARY KEY (document_uuid, position)
);

CREATE TABLE exchange.delivery (
    id                  uuid        PRIMARY KEY,
    document_uuid       uuid        NOT NULL REFERENCES exchange.document (uuid),
    position            smallint    NOT NULL,
    requested_recipient text        NOT NULL,
    recipient           text        NOT NULL,
    state               text        NOT NULL,
    accepted_at         timestamptz NOT NULL,
    queued_at           timestamptz,
    pushed_at           timestamptz,
    acknowledged_at     timestamptz,
    push_count          integer     NOT NULL DEFAULT 0,
    CONSTRAINT one_copy_per_recipient UNIQUE (document_uuid, recipient)
);

CREATE INDEX delivery_inbox ON exchange.delivery (recipient, state, accepted_at);

-- Transactional outbox: a row per AMQP message to publish, written with the state change.
CREATE TABLE exchange.outbox (
    id           bigserial   PRIMARY KEY,
    routing_key  text        NOT NULL,
    message_id   text        NOT NULL,
    message_type text        NOT NULL,
    payload      bytea       NOT NULL,
    delivery_id  uuid,
    created_at   timestamptz NOT NULL DEFAULT now()
);
