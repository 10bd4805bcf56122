-- Online metrics per model version. The projection `recommendation_outcomes` keeps one
-- row per (recommendation, movie, outcome): a click (feedback "click" on a shown movie)
-- or a conversion (the same user watched it with progress >= 0.5, rated it >= 4 or
-- favorited it within 24 h of it being shown). The key makes each count once however
-- often the events say it; first_at is the earliest event time that earned it.
-- Recommendations themselves are written by the query side (not events): the outcome
-- folds read them, so a rebuild replays the store against the recommendations kept.
CREATE TABLE recommendation_outcomes (
    recommendation_id text        NOT NULL,
    movie_id          text        NOT NULL,
    outcome           text        NOT NULL CHECK (outcome IN ('click', 'conversion')),
    model_version     text        NOT NULL,
    user_id           text        NOT NULL,
    shown_at          timestamptz NOT NULL,
    first_at          timestamptz NOT NULL,
    PRIMARY KEY (recommendation_id, movie_id, outcome)
);
CREATE INDEX recommendation_outcomes_shown ON recommendation_outcomes (shown_at)
    INCLUDE (model_version, outcome);
CREATE INDEX recommendation_outcomes_user ON recommendation_outcomes (user_id);

-- The conversion fold finds a user's recommendations of the last 24 h; the metrics
-- endpoint counts recommendations per model version since a time (index-only).
CREATE INDEX recommendations_user_time ON recommendations (user_id, created_at);
CREATE INDEX recommendations_time ON recommendations (created_at) INCLUDE (model_version);
