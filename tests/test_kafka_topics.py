"""The topics a forget depends on, on the real broker: processed_features is compacted
(its tombstone erases the user's documents), the event topics have a stated retention;
topics created before without configs get them."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from projections.kafka_feed import ensure_topics, topic_configs
from schema import topics

SEVEN_DAYS_MS = str(7 * 24 * 3600 * 1000)


async def configs_of(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    """As the broker reports them, once it knows the topics (a new one takes a moment)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                return await topic_configs(admin, names)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def test_the_service_topics_are_compacted_or_retained(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap)
    found = await configs_of(kafka_bootstrap, list(topics.PARTITIONS))
    features = found[topics.FEATURES]
    assert features["cleanup.policy"] == "compact"
    assert int(features["max.compaction.lag.ms"]) <= topics.ERASED_WITHIN_MS["compacted"]
    for name in (topics.INTERACTIONS, topics.FEEDBACK, topics.DEAD_LETTERS):
        assert found[name]["cleanup.policy"] == "delete", name
        assert found[name]["retention.ms"] == SEVEN_DAYS_MS, name
        retained_for = int(found[name]["retention.ms"]) + int(found[name]["segment.ms"])
        assert retained_for <= topics.ERASED_WITHIN_MS["retained"]


async def test_topics_created_without_configs_are_given_them(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    features, events = prefix + topics.FEATURES, prefix + topics.INTERACTIONS
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(features, 1, 1), NewTopic(events, 1, 1)])
    finally:
        await admin.close()
    before = await configs_of(kafka_bootstrap, [features, events])
    assert before[features]["cleanup.policy"] == "delete"  # the broker's default

    partitions = {features: 1, events: 1}
    configs = {
        features: topics.CONFIGS[topics.FEATURES],
        events: topics.CONFIGS[topics.INTERACTIONS],
    }
    await ensure_topics(kafka_bootstrap, partitions, configs)
    after = await configs_of(kafka_bootstrap, [features, events])
    for name in (features, events):
        assert {k: after[name][k] for k in configs[name]} == configs[name]
    await ensure_topics(kafka_bootstrap, partitions, configs)  # nothing more to change
