-- A counter every change to the catalog raises in its own transaction, so a reader can
-- tell cheaply (one row) whether its copy of the catalog is still current. Projections
-- check it for each batch: a fold never uses a catalog older than the events it folds
-- (a movie PUT before its events were accepted is visible to the batch holding them).
-- A statement trigger, so every writer (PUT, `cinemate import`, psql) counts.
CREATE TABLE catalog_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint  NOT NULL
);
INSERT INTO catalog_version (version) VALUES (1);

CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_version SET version = version + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER movies_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON movies
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
