-- The append is planned once per connection, not once per call. 0001 and 0005 planned
-- each call for its own arrays (force_custom_plan), fearing that a plan made for a small
-- group would be poor for a large one. Measured on PostgreSQL 16 (backend CPU per call,
-- one connection, pgserver), the generic plan is as fast for large groups: 19.5 µs an
-- event at 1,000 events and 17.7 at 5,000, against 19.5-20.0 and 17.7 for custom plans.
-- The planner picks the same index scans for every array size. Small groups, which is
-- what single POSTs make, are much cheaper: 175 µs against 410-460 µs for a one-event
-- group, and 230 against 490-740 for four. Planning the four-CTE statement was most of a
-- small group's cost.
ALTER FUNCTION append_interaction_events(
    integer[], uuid[], text[], text[], text[], integer[], jsonb[], bytea[], timestamptz[]
) SET plan_cache_mode = force_generic_plan;
