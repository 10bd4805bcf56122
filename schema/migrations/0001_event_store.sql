-- The event store: one append-only table, one stream per user.

CREATE TABLE interaction_events (
    position           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Readers follow (tx_id, position) below the oldest running transaction, so an
    -- event whose position was taken before a slower transaction commits is never skipped.
    tx_id              xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id           uuid        NOT NULL UNIQUE,
    originator_id      text        NOT NULL,
    originator_version integer     NOT NULL CHECK (originator_version >= 1),
    event_type         text        NOT NULL,
    topic              text        NOT NULL,
    schema_version     integer     NOT NULL,
    payload            jsonb       NOT NULL,
    body_hash          bytea       NOT NULL,
    occurred_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (originator_id, originator_version)
);

CREATE INDEX interaction_events_tx_position ON interaction_events (tx_id, position);

-- Rows are immutable. The one delete allowed is "forget user", which names the user in
-- the transaction-local setting cinemate.forget_user.
CREATE FUNCTION interaction_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('cinemate.forget_user', true) = OLD.originator_id THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'interaction_events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE FUNCTION interaction_events_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'interaction_events is append-only: TRUNCATE refused'
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER interaction_events_immutable
    BEFORE UPDATE OR DELETE ON interaction_events
    FOR EACH ROW EXECUTE FUNCTION interaction_events_refuse_change();

CREATE TRIGGER interaction_events_no_truncate
    BEFORE TRUNCATE ON interaction_events
    FOR EACH STATEMENT EXECUTE FUNCTION interaction_events_refuse_truncate();

-- Appends a group of events from many requests in one transaction (group commit).
-- Returns one row per input row, in input order:
--   accepted   newly stored
--   duplicate  the event_id was stored before with the same body hash
--   conflict   the event_id was stored before with a different body
--   rejected   another row of the same request conflicted, so none of it is stored
CREATE FUNCTION append_interaction_events(
    p_request         integer[],
    p_event_id        uuid[],
    p_user_id         text[],
    p_event_type      text[],
    p_topic           text[],
    p_schema_version  integer[],
    p_payload         jsonb[],
    p_body_hash       bytea[],
    p_occurred_at     timestamptz[]
) RETURNS TABLE (idx integer, event_id uuid, "position" bigint, stream_version integer, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    -- Per-stream locks, taken before the first write: advisory locks assign no
    -- transaction id, so this transaction's xid is younger than that of every earlier
    -- writer of the same streams, and (tx_id, position) order keeps each stream in
    -- version order for readers.
    PERFORM pg_advisory_xact_lock(k)
    FROM (SELECT DISTINCT hashtextextended(u, 0) AS k FROM unnest(p_user_id) AS u ORDER BY 1) AS keys;

    RETURN QUERY
    WITH input AS (
        SELECT t.idx::integer AS idx, t.request, t.event_id, t.user_id, t.event_type, t.topic,
               t.schema_version, t.payload, t.body_hash, t.occurred_at,
               e.position AS known_position, e.originator_version AS known_version,
               e.body_hash AS known_hash
        FROM unnest(p_request, p_event_id, p_user_id, p_event_type, p_topic, p_schema_version,
                    p_payload, p_body_hash, p_occurred_at)
             WITH ORDINALITY AS t(request, event_id, user_id, event_type, topic, schema_version,
                                  payload, body_hash, occurred_at, idx)
        LEFT JOIN interaction_events AS e ON e.event_id = t.event_id
    ),
    conflicted AS (
        SELECT DISTINCT i.request FROM input AS i
        WHERE i.known_hash IS NOT NULL AND i.known_hash <> i.body_hash
    ),
    fresh AS (
        SELECT i.* FROM input AS i
        WHERE i.known_position IS NULL
          AND i.request NOT IN (SELECT c.request FROM conflicted AS c)
    ),
    heads AS (
        SELECT s.user_id,
               COALESCE((SELECT max(e.originator_version) FROM interaction_events AS e
                         WHERE e.originator_id = s.user_id), 0) AS head
        FROM (SELECT DISTINCT f.user_id FROM fresh AS f) AS s
    ),
    inserted AS (
        INSERT INTO interaction_events AS ev
            (event_id, originator_id, originator_version, event_type, topic, schema_version,
             payload, body_hash, occurred_at)
        SELECT f.event_id, f.user_id,
               h.head + row_number() OVER (PARTITION BY f.user_id ORDER BY f.idx),
               f.event_type, f.topic, f.schema_version, f.payload, f.body_hash, f.occurred_at
        FROM fresh AS f JOIN heads AS h ON h.user_id = f.user_id
        ORDER BY f.idx
        RETURNING ev.event_id, ev.position, ev.originator_version
    )
    SELECT i.idx, i.event_id,
           COALESCE(ins.position, i.known_position),
           COALESCE(ins.originator_version, i.known_version),
           CASE
               WHEN ins.position IS NOT NULL THEN 'accepted'
               WHEN i.known_position IS NULL THEN 'rejected'
               WHEN i.known_hash = i.body_hash THEN 'duplicate'
               ELSE 'conflict'
           END
    FROM input AS i LEFT JOIN inserted AS ins ON ins.event_id = i.event_id
    ORDER BY i.idx;

    -- Wakes followers; delivered only when this transaction commits.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        PERFORM pg_notify('interaction_events', '');
    END IF;
END
$$;
