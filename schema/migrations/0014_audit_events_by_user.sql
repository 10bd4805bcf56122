-- The audit trail no longer keeps an index of every row by user. Each event's "stored"
-- row (and, with Kafka consumers, its "consumed" row) went into audit_events_user too, a
-- second B-tree insert per event for a lookup only forgetting a user makes: timed alone
-- on the 2-core machine (batches of 1,000 rows, PostgreSQL 16), the insert cost 37-54 µs
-- a row with that index and 26-31 µs without it. Forgetting deletes the user's rows by
-- their events' ids instead (the primary key), which the store's erase returns; the only
-- rows of a user not named by a stored event are dead letters of unreadable messages,
-- which this small partial index finds.
DROP INDEX IF EXISTS audit_events_user;
CREATE INDEX audit_events_dead_lettered_user ON audit_events (user_id)
    WHERE stage = 'dead_lettered';
