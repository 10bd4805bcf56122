-- How far each user's stream has been applied to the read models, by any applier: the
-- store followers and the Kafka consumers both skip events at or below it, in the
-- transaction that applies the rest, so redeliveries and republished events change
-- nothing and the two kinds of worker can run side by side.
CREATE TABLE applied_streams (
    user_id        text PRIMARY KEY,
    stream_version integer NOT NULL
);

-- One row per running Kafka consumer, for health and metrics.
CREATE TABLE kafka_consumers (
    member       text PRIMARY KEY,
    group_id     text        NOT NULL,
    partitions   integer[]   NOT NULL DEFAULT '{}',
    lag_messages bigint      NOT NULL DEFAULT 0,
    state        text        NOT NULL DEFAULT 'starting',
    error        text,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Counted at every metrics scrape.
CREATE INDEX audit_events_dead_lettered ON audit_events (at) WHERE stage = 'dead_lettered';
