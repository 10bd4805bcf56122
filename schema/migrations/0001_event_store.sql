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
