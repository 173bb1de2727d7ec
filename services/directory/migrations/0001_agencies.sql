-- The agency registry. Rows are never deleted: a closed agency keeps its code with valid_to set.
CREATE SCHEMA IF NOT EXISTS directory;

CREATE SEQUENCE directory.agency_version;

CREATE TABLE directory.agency (
    code            text        PRIMARY KEY,
    name            text        NOT NULL,
    parent_code     text        REFERENCES directory.agency (code),
    kind            text        NOT NULL,
    valid_from      date        NOT NULL,
    valid_to        date,
    successor_codes text[]      NOT NULL DEFAULT '{}',
    email           text        NOT NULL DEFAULT '',
    version         bigint      NOT NULL DEFAULT nextval('directory.agency_version'),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT valid_range CHECK (valid_to IS NULL OR valid_to >= valid_from)
);

CREATE INDEX agency_parent ON directory.agency (parent_code, code);
CREATE UNIQUE INDEX agency_version_key ON directory.agency (version);
