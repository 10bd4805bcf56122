"""A stored event no projection can apply: skipped and recorded, without stopping the rest;
and a projection failing on every event: nothing skipped."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from cinemate.app import Services
from command_side.new_events import new_event
from projections.store_follower import StoreFollower
from schema.commands import FeedbackCommand, RatingCommand
from tests.projection_helpers import FailingProjection, features_at, wait_caught_up


async def test_an_event_failing_alone_is_dead_lettered_and_the_rest_projected(
    services: Services, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    # Stored before validation capped `rank`: model_feedback's integer column cannot hold it.
    poison = new_event(
        FeedbackCommand.model_construct(
            user_id="v1", movie_id="m1", recommendation_id="r1", action="click", rank=2**31
        )
    )
    before = new_event(RatingCommand(user_id="v1", movie_id="m0", rating=3))
    after = new_event(RatingCommand(user_id="v1", movie_id="m2", rating=5))
    other = new_event(RatingCommand(user_id="v2", movie_id="m2", rating=4))
    for event in (before, poison, after, other):
        [result] = await services.committer.append([event])
        assert result.outcome == "accepted"

    await wait_caught_up(services.pool, within=60)
    features = await features_at(client, "v1", 3)
    await features_at(client, "v2", 1)

    dead = await db.fetch("SELECT event_id, detail FROM audit_events WHERE stage = 'dead_lettered'")
    assert [r["event_id"] for r in dead] == [poison.event_id]
    assert "applier" in dead[0]["detail"] and "out of int32 range" in dead[0]["detail"]
    assert features["event_counts"]["rating"] == 2 and features["event_counts"]["feedback"] == 0
    assert await db.fetchval("SELECT count(*) FROM model_feedback") == 0
    metrics = (await client.get("/metrics")).text
    assert "cinemate_dlq_messages 1.0" in metrics


async def test_a_projection_failing_on_every_event_skips_none(
    settings_without_projectors: Services, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    services = settings_without_projectors
    for user in ("w1", "w2", "w3"):
        await services.committer.append(
            [new_event(RatingCommand(user_id=user, movie_id="m", rating=1))]
        )
    projector = StoreFollower(
        services.pool, [*services.projections.values(), FailingProjection("broken", lambda _: True)]
    )
    task = asyncio.create_task(projector.run(asyncio.Event(), idle_seconds=0.1))
    try:
        # Until it has looked for a bad event twice (retries, then isolation, each time).
        for _ in range(600):
            if sum("not skipping" in r.getMessage() for r in caplog.records) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE stage = 'dead_lettered'") == 0
    assert await db.fetchval("SELECT count(*) FROM user_features") == 0
    positions = await db.fetch("SELECT position FROM projection_checkpoints")
    assert positions and all(r["position"] == 0 for r in positions)
    # It did look for a bad event, and refused to call one bad.
    assert sum("not skipping" in r.getMessage() for r in caplog.records) >= 2
