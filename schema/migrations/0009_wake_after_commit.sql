-- Appends no longer notify from inside their own transaction. A NOTIFY takes a
-- database-wide lock at commit and holds it until the commit is flushed, so every
-- appending transaction waited for the previous one's fsync: the group-commit writers
-- of a process (and of every process) committed one at a time. The writers now notify
-- after their commit, from a transaction of their own that does not wait for a flush
-- (event_store/append.py, `Waker`).
DROP TRIGGER IF EXISTS interaction_events_appended ON interaction_events;
DROP FUNCTION IF EXISTS interaction_events_notify();
