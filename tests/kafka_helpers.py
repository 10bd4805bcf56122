"""Reading topics back in tests, and settings that turn Kafka on."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from cinemate.settings import Settings

Messages = list[ConsumerRecord[bytes, bytes]]


def with_kafka(settings: Settings, bootstrap: str, **changes: Any) -> Settings:
    return dataclasses.replace(
        settings, kafka_bootstrap_servers=bootstrap, enable_kafka=True, **changes
    )


def user_of(message: ConsumerRecord[bytes, bytes]) -> str:
    return (message.key or b"").decode()


async def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[Messages], bool],
    keep: Callable[[ConsumerRecord[bytes, bytes]], bool] = lambda _: True,
    within: float = 90,
) -> Messages:
    """The topic's messages that `keep` accepts, read from the beginning until `done`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    messages: Messages = []
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not done(messages):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                messages.extend(m for m in batch if keep(m))
    finally:
        await consumer.stop()
    return messages


async def consume_events(
    bootstrap: str, topic: str, expected: int, user_prefix: str = "", within: float = 90
) -> Messages:
    """Event messages of users named `user_prefix`..., until `expected` distinct event ids."""

    def enough(messages: Messages) -> bool:
        return len({dict(m.headers)["event_id"] for m in messages}) >= expected

    return await consume_until(
        bootstrap,
        topic,
        enough,
        keep=lambda m: m.value is not None and user_of(m).startswith(user_prefix),
        within=within,
    )


def envelope(message: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    assert message.value is not None
    value = orjson.loads(message.value)
    assert isinstance(value, dict)
    return value
