"""The one adapter of the `interaction_events` table.

Everything that touches the table in SQL lives here, shaped like `eventsourcing`'s
recorders but on asyncpg: group-committed appends (`append`), commit-safe reads in
(tx_id, position) order for followers (`feed`), per-user stream reads and erasure
(`streams`), lag (`lag`), the commit listener (`listener`), the advisory-lock namespaces
(`locks`), the one error every caller catches (`errors.StoreUnavailable`), and the one
way to stop a task that talks to it (`stopping`: asyncpg can swallow a cancellation).

Invariants the package keeps:
- a row is acknowledged only after the transaction holding it has committed;
- a follower reading `feed.read_after` never skips an event that commits later;
- each user's stream has contiguous versions starting at 1, and is met by followers in
  version order;
- no client-chosen id can reach an internal lock (locks are two-key, one class per use).
"""

# The store's name: its table's, its commit channel's, and (SPEC, Kafka) the topic's that
# mirrors it in order.
NAME = "interaction_events"
