-- What Submit keeps in memory of the directory (recipients' resolutions, which read agencies and
-- hub routes; signature policies) is stamped with this generation, which every change to those
-- tables bumps in its own transaction and NOTIFYs (directory_changed) at its commit: every
-- process drops what it kept when it hears it, and a Submit's transaction stores the document
-- only if the generation its directory reads were stamped with is still the current one
-- (services/exchange/service_layer/directory_cache.py has the argument).
--
-- A row, not a sequence: nextval is visible before the writer commits, so a read could take the
-- new number with the old data; the row's new value becomes visible with the change, at commit.
CREATE TABLE directory.generation (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    n   bigint  NOT NULL
);
INSERT INTO directory.generation (one, n) VALUES (true, 1);

-- Statement-level, and only when the statement changed rows (a peer pull's upsert of agencies
-- that did not change, a compare-and-set that matched nothing): one bump per changing statement
-- however many rows it wrote.
CREATE FUNCTION directory.bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bumped bigint;
BEGIN
    IF TG_OP <> 'TRUNCATE' AND NOT EXISTS (SELECT FROM changed_rows) THEN
        RETURN NULL;
    END IF;
    UPDATE directory.generation SET n = n + 1 RETURNING n INTO bumped;
    PERFORM pg_notify('directory_changed', bumped::text);
    RETURN NULL;
END
$$;

-- A trigger with a transition table takes one event (Postgres's rule), hence three per table.
CREATE TRIGGER agency_inserted AFTER INSERT ON directory.agency
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER agency_updated AFTER UPDATE ON directory.agency
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER agency_deleted AFTER DELETE ON directory.agency
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER agency_truncated AFTER TRUNCATE ON directory.agency
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();

CREATE TRIGGER hub_route_inserted AFTER INSERT ON directory.hub_route
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER hub_route_updated AFTER UPDATE ON directory.hub_route
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER hub_route_deleted AFTER DELETE ON directory.hub_route
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER hub_route_truncated AFTER TRUNCATE ON directory.hub_route
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();

CREATE TRIGGER signature_policy_inserted AFTER INSERT ON directory.signature_policy
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER signature_policy_updated AFTER UPDATE ON directory.signature_policy
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER signature_policy_deleted AFTER DELETE ON directory.signature_policy
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
CREATE TRIGGER signature_policy_truncated AFTER TRUNCATE ON directory.signature_policy
    FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_generation();
