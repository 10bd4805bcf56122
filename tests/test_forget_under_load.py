"""Forgetting a user while they post, and while Redis is away: once DELETE answers,
nothing of the old stream remains anywhere, the new stream starts at version 1, and no
cached document of the old stream is ever served."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from cinemate.app import Services, build_app, open_services
from cinemate.settings import Settings
from tests.projection_helpers import features_at, wait_caught_up
from tests.redis_helpers import PrivateRedis

ADMIN = {"Authorization": "Bearer s3cret"}
USER = "leaver"


@dataclass(frozen=True)
class Ack:
    event_id: uuid.UUID
    stream_version: int
    position: int


async def test_forget_under_load_leaves_nothing_acknowledged_before_it(
    services: Services, admin_client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    http = admin_client
    acks: list[Ack] = []
    statuses: dict[int, int] = {}
    stop = asyncio.Event()

    async def poster(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            event_id = uuid.uuid4()
            body = {"user_id": USER, "movie_id": f"m{n}-{i}", "rating": 3}
            answer = await http.post(
                "/api/v1/events/rating", json={**body, "event_id": str(event_id)}
            )
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            if answer.status_code == 202:
                found = answer.json()
                acks.append(Ack(event_id, found["stream_version"], found["position"]))

    posters = [asyncio.create_task(poster(n)) for n in range(6)]
    deadline = time.monotonic() + 60
    while len(acks) < 300:
        assert time.monotonic() < deadline, statuses
        await asyncio.sleep(0.01)
    answer = await http.delete(f"/api/v1/users/{USER}", headers=ADMIN)
    acked_before = list(acks)  # everything acknowledged before DELETE answered
    assert answer.status_code == 200, answer.text
    erased = answer.json()["erased_events"]
    while len(acks) < len(acked_before) + 100:  # and the user goes on posting
        assert time.monotonic() < deadline, statuses
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*posters)
    assert set(statuses) == {202}, statuses

    stored = {
        r["event_id"]: (r["originator_version"], r["position"])
        for r in await db.fetch(
            "SELECT event_id, originator_version, position FROM interaction_events"
            " WHERE originator_id = $1",
            USER,
        )
    }
    # What remains is one new stream, numbered from 1, as its appends were told.
    assert sorted(v for v, _ in stored.values()) == list(range(1, len(stored) + 1))
    by_id = {a.event_id: a for a in acks}
    assert all(by_id[e] == Ack(e, v, p) for e, (v, p) in stored.items())
    first_new = min(p for _, p in stored.values())
    gone = [a for a in acks if a.event_id not in stored]
    assert gone and all(a.position < first_new for a in gone)
    assert len(gone) <= erased
    old_left = [a for a in acked_before if a.event_id in stored and a.position < first_new]
    assert not old_left
    # ... and the read models know only the new stream.
    await wait_caught_up(services.pool)
    document = await features_at(http, USER, len(stored))
    assert document["stream_version"] == len(stored)
    assert document["event_counts"]["rating"] == len(stored)
    audited = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE user_id = $1 AND stage = 'stored'", USER
    )
    assert audited == len(stored)
    print(
        f"{len(acked_before)} acknowledged before DELETE answered, {erased} erased, "
        f"{len(stored)} in the new stream"
    )


@pytest.fixture
async def secured_http(
    settings: Settings, private_redis: PrivateRedis
) -> AsyncIterator[httpx.AsyncClient]:
    assert settings.database_url
    secured = dataclasses.replace(settings, admin_token="s3cret")
    async with AsyncExitStack() as stack:
        services = await open_services(secured, settings.database_url, private_redis.url, stack)
        transport = httpx.ASGITransport(app=build_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            yield http


@pytest.mark.parametrize("outage", ["restart", "freeze"])
async def test_a_user_forgotten_while_redis_is_away_is_not_served_again(
    secured_http: httpx.AsyncClient, private_redis: PrivateRedis, outage: str
) -> None:
    http = secured_http
    for i in range(1, 6):
        await http.post(
            "/api/v1/events/rating", json={"user_id": USER, "movie_id": f"m{i}", "rating": 4}
        )
    await features_at(http, USER, 5)
    deadline = time.monotonic() + 10
    while b'"stream_version":5,' not in (private_redis.client().get(f"features:{USER}") or b""):
        assert time.monotonic() < deadline, "the document never reached Redis"
        await asyncio.sleep(0.02)

    if outage == "restart":
        await asyncio.to_thread(private_redis.shutdown_save)
    else:
        private_redis.freeze()
    try:
        answer = await http.delete(f"/api/v1/users/{USER}", headers=ADMIN)
        assert answer.status_code == 200 and answer.json()["erased_events"] == 5
        assert (await http.get(f"/api/v1/features/{USER}")).status_code == 404
    finally:
        if outage == "restart":
            await asyncio.to_thread(private_redis.start)
        else:
            private_redis.thaw()
    if outage == "restart":
        with private_redis.client() as conn:  # the snapshot brought the document back
            assert b'"stream_version":5,' in (conn.get(f"features:{USER}") or b"")
    for _ in range(50):
        assert (await http.get(f"/api/v1/features/{USER}")).status_code == 404
    again = await http.post(
        "/api/v1/events/watch", json={"user_id": USER, "movie_id": "m9", "progress": 0.5}
    )
    assert again.json()["stream_version"] == 1
    document = await features_at(http, USER, 1)
    assert document["event_counts"]["rating"] == 0 and document["event_counts"]["watch"] == 1
