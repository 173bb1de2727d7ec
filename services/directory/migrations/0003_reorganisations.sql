-- Recorded reorganisations: merges, renames, closures and splits with their effective date. The
-- agencies they close keep their rows (valid_to, successor_codes); this is the history of why.
CREATE TABLE directory.reorganisation (
    id             bigserial   PRIMARY KEY,
    kind           text        NOT NULL CHECK (kind IN ('merge', 'rename', 'close', 'split')),
    effective_date date        NOT NULL,
    old_codes      text[]      NOT NULL CHECK (cardinality(old_codes) > 0),
    new_codes      text[]      NOT NULL DEFAULT '{}',
    note           text        NOT NULL DEFAULT '',
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX reorganisation_old_codes ON directory.reorganisation USING gin (old_codes);
