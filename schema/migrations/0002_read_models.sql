-- Read models. Each is owned by one projection, which writes it together with its
-- checkpoint in one transaction; every table here can be rebuilt from the store.

CREATE TABLE projection_checkpoints (
    name        text PRIMARY KEY,
    tx_id       xid8        NOT NULL DEFAULT '0',
    position    bigint      NOT NULL DEFAULT 0,
    state       text        NOT NULL DEFAULT 'running',
    -- Set by the running projector on every pass, so a stopped one shows as stopped.
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- json, not jsonb: documents are written on every change and read back whole, so
-- the cheaper text form wins; ->> still works for ad-hoc queries.
CREATE TABLE user_features (
    user_id        text PRIMARY KEY,
    stream_version integer     NOT NULL,
    position       bigint      NOT NULL,
    state          json        NOT NULL,
    doc            json        NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE item_stats (
    movie_id     text PRIMARY KEY,
    interactions bigint           NOT NULL,
    score        double precision NOT NULL,
    score_at     double precision NOT NULL,
    trend_key    double precision NOT NULL
);
CREATE INDEX item_stats_trend ON item_stats (trend_key DESC, movie_id);

-- The audit trail. One "stored" row per event (the audit projection), plus one row per
-- rarer stage of a single event (dead_lettered, erased). Stages that happen to events in
-- bulk (projected by a projection, published to Kafka) are recorded once per batch in
-- audit_batches, as the (tx_id, position) range they covered: an event's trail is its
-- rows here plus the batches whose range contains it.
CREATE TABLE audit_events (
    event_id   uuid        NOT NULL,
    stage      text        NOT NULL,
    position   bigint      NOT NULL,
    user_id    text        NOT NULL,
    event_type text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    detail     jsonb,
    PRIMARY KEY (event_id, stage)
);
CREATE TABLE audit_batches (
    stage          text        NOT NULL,  -- projected | published
    actor          text        NOT NULL,  -- the projection, or the relay
    first_tx_id    xid8        NOT NULL,
    first_position bigint      NOT NULL,
    last_tx_id     xid8        NOT NULL,
    last_position  bigint      NOT NULL,
    events         integer     NOT NULL,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_batches_range ON audit_batches (actor, last_tx_id, last_position);
CREATE INDEX audit_events_user ON audit_events (user_id, position);

-- The catalog: written by PUT /api/v1/movies/{id} and `cinemate import`.
CREATE TABLE movies (
    movie_id   text PRIMARY KEY,
    title      text        NOT NULL,
    genres     text[]      NOT NULL DEFAULT '{}',
    year       integer,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What each recommendation showed, so feedback can be credited to its model version.
CREATE TABLE recommendations (
    recommendation_id text PRIMARY KEY,
    user_id           text        NOT NULL,
    model_version     text        NOT NULL,
    strategy          text        NOT NULL,
    items             text[]      NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_feedback (
    event_id          uuid PRIMARY KEY,
    position          bigint      NOT NULL,
    recommendation_id text        NOT NULL,
    user_id           text        NOT NULL,
    movie_id          text        NOT NULL,
    action            text        NOT NULL,
    rank              integer,
    model_version     text,
    strategy          text,
    shown             boolean     NOT NULL DEFAULT false,
    occurred_at       timestamptz NOT NULL
);
CREATE INDEX model_feedback_version ON model_feedback (model_version, action);
