-- Messages for Kafka that are not store events, written in the transaction that decides
-- them and published by the relay: today the tombstone of a forgotten user.
CREATE TABLE kafka_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    value      bytea,      -- NULL: a tombstone
    created_at timestamptz NOT NULL DEFAULT now()
);
