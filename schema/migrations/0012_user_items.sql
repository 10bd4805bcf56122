-- Each movie's reduced signals for a user (the user_features state's `items`) in a row of
-- its own: a batch reads and writes only the items of the movies its events name, so an
-- event's cost no longer grows with the user's history (projections/user_features.py).
-- A user's items are written with the user's user_features row, under its row lock, and
-- only when that row was written (an older state, a refresh racing the projector, writes
-- neither).
CREATE TABLE user_items (
    user_id  text NOT NULL,
    movie_id text NOT NULL,
    signals  json NOT NULL,
    PRIMARY KEY (user_id, movie_id)
);

INSERT INTO user_items (user_id, movie_id, signals)
SELECT f.user_id, i.key, i.value
FROM user_features AS f, json_each(f.state -> 'items') AS i;

UPDATE user_features SET state = (state::jsonb - 'items')::json WHERE state -> 'items' IS NOT NULL;
