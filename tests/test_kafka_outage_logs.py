"""A broker outage on the log: one line of ours that says what waits and how it retries,
one when it is over, and aiokafka's reconnect chatter let through once per message per
half a minute, not twenty lines a second."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from contextlib import AsyncExitStack

import httpx
import pytest

from cinemate.app import build_app, open_services
from cinemate.settings import Settings
from devtools.kafka_broker import KafkaBroker
from tests.kafka_helpers import consume_events, with_kafka


async def test_a_broker_outage_is_one_warning_of_ours_and_little_of_aiokafka(
    settings: Settings, own_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = with_kafka(settings, own_broker.bootstrap_servers)
    assert settings.database_url and settings.redis_url
    caplog.set_level(logging.INFO)
    async with AsyncExitStack() as stack:
        services = await open_services(settings, settings.database_url, settings.redis_url, stack)
        transport = httpx.ASGITransport(app=build_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            first = await http.post(
                "/api/v1/events/watch", json={"user_id": "quiet", "movie_id": "m0", "progress": 1}
            )
            assert first.status_code == 202
            await consume_events(own_broker.bootstrap_servers, "interaction_events", 1, "quiet")
            own_broker.kill()
            caplog.clear()
            for i in range(1, 6):
                answer = await http.post(
                    "/api/v1/events/watch",
                    json={"user_id": "quiet", "movie_id": f"m{i}", "progress": 0.5},
                )
                assert answer.status_code == 202
            await asyncio.sleep(12)
            during = list(caplog.records)
            await asyncio.to_thread(own_broker.start)
            await consume_events(own_broker.bootstrap_servers, "interaction_events", 6, "quiet")
            for _ in range(100):
                if any("reachable again" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.2)
    ours = [r for r in during if r.name.startswith("cinemate") and r.levelno >= logging.WARNING]
    theirs = Counter(r.getMessage()[:60] for r in during if r.name.startswith("aiokafka"))
    assert len(ours) == 1 and ours[0].getMessage().startswith("kafka unreachable: "), [
        r.getMessage() for r in ours
    ]
    assert "backing off" in ours[0].getMessage()
    assert sum(theirs.values()) <= 12, theirs  # a few distinct messages, each once
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    print(f"12 s of outage: {len(ours)} lines of ours, aiokafka {dict(theirs)}")
