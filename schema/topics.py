"""The Kafka topics: names, partition counts, and the consumer group of the projections."""

from __future__ import annotations

INTERACTIONS = "interaction_events"
FEATURES = "processed_features"
FEEDBACK = "model_feedback"
DEAD_LETTERS = "interaction_events_dlq"

PARTITIONS = {
    INTERACTIONS: 6,
    FEEDBACK: 3,
    FEATURES: 6,
    DEAD_LETTERS: 1,
}

PROJECTIONS_GROUP = "cinemate-projections"
