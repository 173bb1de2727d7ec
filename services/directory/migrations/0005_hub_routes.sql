-- Federation (domain.md §1): which hub serves an agency. Agencies pulled from a peer hub's
-- directory keep the peer in served_by (NULL: served here). Codes not in the directory route by
-- pattern: a whole code (an override), a level-1 part ('H45'), a group letter ('H') or '*'.
ALTER TABLE directory.agency ADD COLUMN served_by text;

CREATE TABLE directory.hub_route (
    pattern    text        PRIMARY KEY,
    hub_code   text        NOT NULL,
    updated_by text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- How far each peer's delta feed (SyncAgencies) has been applied.
CREATE TABLE directory.peer_sync (
    hub_code      text        PRIMARY KEY,
    since_version bigint      NOT NULL DEFAULT 0,
    synced_at     timestamptz NOT NULL DEFAULT now()
);
