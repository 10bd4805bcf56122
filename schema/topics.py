"""The Kafka topics: names, partition counts, configs, and the projections' consumer group.

Forgetting a user must complete in Kafka too, within a stated bound (README):
- `processed_features` is compacted: the tombstone a forget publishes supersedes every
  document of the user, and `max.compaction.lag.ms` makes the older values eligible for
  the cleaner within a day however quiet the topic; the tombstone itself stays
  `delete.retention.ms` (a day) so consumers reading behind see it, then goes too.
- the interactions topic, `model_feedback` and the dead letters keep `retention.ms` (seven
  days; the store, not Kafka, is the history consumers rebuild from) in segments of a
  day, so a forgotten user's messages are deleted within eight days.
"""

from __future__ import annotations

import event_store

# The store, event by event in its order, under the store's own name.
INTERACTIONS = event_store.NAME
FEATURES = "processed_features"
FEEDBACK = "model_feedback"
DEAD_LETTERS = f"{INTERACTIONS}_dlq"

PARTITIONS = {
    INTERACTIONS: 6,
    FEEDBACK: 3,
    FEATURES: 6,
    DEAD_LETTERS: 1,
}

DAY_MS = 24 * 3600 * 1000
RETENTION_MS = 7 * DAY_MS
SEGMENT_MS = DAY_MS
# The longest a forgotten user's messages stay in each kind of topic.
ERASED_WITHIN_MS = {
    "compacted": DAY_MS,
    "retained": RETENTION_MS + SEGMENT_MS,
}

_RETAINED = {
    "cleanup.policy": "delete",
    "retention.ms": str(RETENTION_MS),
    "segment.ms": str(SEGMENT_MS),
}
CONFIGS: dict[str, dict[str, str]] = {
    INTERACTIONS: _RETAINED,
    FEEDBACK: _RETAINED,
    DEAD_LETTERS: _RETAINED,
    FEATURES: {
        "cleanup.policy": "compact",
        "max.compaction.lag.ms": str(DAY_MS),
        "delete.retention.ms": str(DAY_MS),
        "segment.ms": str(SEGMENT_MS),
    },
}

PROJECTIONS_GROUP = "cinemate-projections"
