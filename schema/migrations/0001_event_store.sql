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

-- Followers sleep on LISTEN interaction_events; the notice goes out when the insert commits.
CREATE FUNCTION interaction_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('interaction_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER interaction_events_appended
    AFTER INSERT ON interaction_events
    FOR EACH STATEMENT EXECUTE FUNCTION interaction_events_notify();

-- Appends a group of events from many requests in one transaction (group commit), in a
-- single round trip. p_request numbers the requests of the group; event ids are unique
-- across the group. Returns one row per input event, in input order:
--   accepted   newly stored, with its position and stream version
--   duplicate  stored before with the same body hash: the original position and version
--   conflict   stored before with another body
--   rejected   another event of the same request conflicted, so none of it is stored
CREATE FUNCTION append_interaction_events(
    p_request        integer[],
    p_event_id       uuid[],
    p_user_id        text[],
    p_event_type     text[],
    p_topic          text[],
    p_schema_version integer[],
    p_payload        jsonb[],
    p_body_hash      bytea[],
    p_occurred_at    timestamptz[]
) RETURNS TABLE (idx integer, "position" bigint, stream_version integer, outcome text)
LANGUAGE plpgsql
-- Groups range from 1 to thousands of events: a plan cached for small ones would be
-- poor for large ones, so each call is planned for its own arrays.
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    -- A lock per stream before the first write. Advisory locks assign no transaction
    -- id, so this transaction's xid is younger than that of every earlier writer of the
    -- same streams, and readers following (tx_id, position) meet each stream in version
    -- order. The statement below takes its snapshot after the locks are held.
    PERFORM pg_advisory_xact_lock(k)
    FROM (SELECT DISTINCT hashtextextended(u, 0) AS k FROM unnest(p_user_id) AS u ORDER BY 1) AS s;

    RETURN QUERY
    WITH input AS MATERIALIZED (
        SELECT t.*
        FROM unnest(p_request, p_event_id, p_user_id, p_event_type, p_topic, p_schema_version,
                    p_payload, p_body_hash, p_occurred_at)
             WITH ORDINALITY AS t(request, event_id, user_id, event_type, topic, schema_version,
                                  payload, body_hash, occurred_at, i)
    ),
    known AS MATERIALIZED (
        SELECT e.event_id, e.position, e.originator_version, e.body_hash
        FROM interaction_events AS e WHERE e.event_id = ANY (p_event_id)
    ),
    conflicted AS MATERIALIZED (
        SELECT DISTINCT i.request
        FROM input AS i JOIN known AS k ON k.event_id = i.event_id
        WHERE k.body_hash <> i.body_hash
    ),
    inserted AS (
        INSERT INTO interaction_events AS ev
            (event_id, originator_id, originator_version, event_type, topic, schema_version,
             payload, body_hash, occurred_at)
        SELECT i.event_id, i.user_id,
               coalesce((SELECT max(e.originator_version) FROM interaction_events AS e
                         WHERE e.originator_id = i.user_id), 0)
                 + row_number() OVER (PARTITION BY i.user_id ORDER BY i.i),
               i.event_type, i.topic, i.schema_version, i.payload, i.body_hash, i.occurred_at
        FROM input AS i
        WHERE NOT EXISTS (SELECT FROM known AS k WHERE k.event_id = i.event_id)
          AND NOT EXISTS (SELECT FROM conflicted AS c WHERE c.request = i.request)
        ORDER BY i.i
        RETURNING ev.event_id, ev.position, ev.originator_version
    )
    SELECT i.i::integer,
           coalesce(ins.position, k.position),
           coalesce(ins.originator_version, k.originator_version),
           CASE
               WHEN ins.position IS NOT NULL THEN 'accepted'
               WHEN k.position IS NULL THEN 'rejected'
               WHEN k.body_hash = i.body_hash THEN 'duplicate'
               ELSE 'conflict'
           END
    FROM input AS i
    LEFT JOIN inserted AS ins ON ins.event_id = i.event_id
    LEFT JOIN known AS k ON k.event_id = i.event_id
    ORDER BY i.i;
END
$$;
