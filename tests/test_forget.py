"""DELETE /api/v1/users/{id}: the user's events, rows and cache entries are gone."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from cinemate.app import Services
from projections import dead_letters
from tests.projection_helpers import features_at, wait_caught_up

ADMIN = {"Authorization": "Bearer s3cret"}


async def test_forgetting_a_user_erases_them_and_a_new_stream_can_start(
    services: Services, db: asyncpg.Connection, admin_client: httpx.AsyncClient
) -> None:
    http = admin_client
    for movie in ("m1", "m2", "m3"):
        await http.post(
            "/api/v1/events/rating", json={"user_id": "leaver", "movie_id": movie, "rating": 4}
        )
    await http.post(
        "/api/v1/events/rating", json={"user_id": "stayer", "movie_id": "m1", "rating": 2}
    )
    await features_at(http, "leaver", 3)
    await http.get("/api/v1/recommend/leaver")
    # Dead letters: of a stored event, and of unreadable messages (no stored event).
    stored_id = await db.fetchval(
        "SELECT event_id FROM interaction_events WHERE originator_id = 'leaver' LIMIT 1"
    )
    for event_id, user in (
        (stored_id, "leaver"),
        (uuid.uuid4(), "leaver"),
        (uuid.uuid4(), "stayer"),
    ):
        await dead_letters.record(db, event_id, 0, user, "unknown", {"error": "unreadable"})
    assert (await http.delete("/api/v1/users/leaver")).status_code == 401
    answer = await http.delete("/api/v1/users/leaver", headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["erased_events"] == 3

    assert (await http.get("/api/v1/users/leaver/events")).status_code == 404
    assert (await http.get("/api/v1/features/leaver")).status_code == 404
    for table, column in (
        ("interaction_events", "originator_id"),
        ("user_features", "user_id"),
        ("audit_events", "user_id"),
        ("recommendations", "user_id"),
    ):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = 'leaver'") == 0
    erasure = await db.fetchrow(
        "SELECT user_id, detail::text FROM audit_events WHERE stage = 'erased'"
    )
    assert erasure["user_id"] == "" and "leaver" not in erasure["detail"]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_events WHERE user_id = 'stayer' AND stage = 'dead_lettered'"
        )
        == 1
    )
    assert await db.fetchval("SELECT count(*) FROM interaction_events") == 1

    again = await http.post(
        "/api/v1/events/watch", json={"user_id": "leaver", "movie_id": "m9", "progress": 0.2}
    )
    assert again.json()["stream_version"] == 1
    await wait_caught_up(services.pool)
    assert (await features_at(http, "leaver", 1))["event_counts"]["rating"] == 0


async def test_forgetting_waits_for_a_running_rebuild(
    services: Services, db: asyncpg.Connection, admin_client: httpx.AsyncClient
) -> None:
    """A rebuild's replay may hold the user's events already and would swap them back in."""
    http = admin_client
    rating = {"user_id": "leaver", "movie_id": "m1", "rating": 4}
    assert (await http.post("/api/v1/events/rating", json=rating)).status_code == 202
    # What a rebuild in progress looks like: its shadow checkpoint, beating.
    await db.execute(
        "INSERT INTO projection_checkpoints (name, state) VALUES ('user_features__rebuild', 'rebuilding')"
    )
    refused = await http.delete("/api/v1/users/leaver", headers=ADMIN)
    assert refused.status_code == 503 and refused.json()["error"] == "rebuild_running"
    assert refused.headers["Retry-After"] == "10"
    assert await db.fetchval("SELECT count(*) FROM interaction_events") == 1

    await db.execute("DELETE FROM projection_checkpoints WHERE name = 'user_features__rebuild'")
    answer = await http.delete("/api/v1/users/leaver", headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["erased_events"] == 1
