"""Online metrics per model version, folded from the store on real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from cinemate.app import Services
from projections.outcomes import converts
from projections.rebuild import rebuild
from schema import events
from tests.projection_helpers import add_catalog, snapshot, wait_caught_up

ADMIN = {"Authorization": "Bearer s3cret"}
NOW = datetime(2024, 5, 1, tzinfo=UTC)


def test_conversion_signals() -> None:
    def event(cls: type[events.InteractionEvent], **fields: Any) -> events.InteractionEvent:
        return cls(originator_id="u", originator_version=1, timestamp=NOW, context=None, **fields)

    assert converts(event(events.Watched, movie_id="m", progress=0.5, watched_seconds=None))
    assert not converts(event(events.Watched, movie_id="m", progress=0.49, watched_seconds=None))
    assert converts(event(events.Rated, movie_id="m", rating=4.0)) == "m"
    assert not converts(event(events.Rated, movie_id="m", rating=3.5))
    assert converts(event(events.Favorited, movie_id="m", action="add")) == "m"
    assert not converts(event(events.Favorited, movie_id="m", action="remove"))
    click = event(events.FeedbackGiven, movie_id="m", recommendation_id="r", action="click", rank=1)
    assert not converts(click)


def at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def post(http: httpx.AsyncClient, kind: str, body: dict[str, Any]) -> None:
    answer = await http.post(
        f"/api/v1/events/{kind}" if kind != "feedback" else "/api/v1/feedback", json=body
    )
    assert answer.status_code == 202, answer.text


async def shown_to(http: httpx.AsyncClient, user: str) -> dict[str, Any]:
    answer = await http.get(f"/api/v1/recommend/{user}?limit=5")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    assert len(body["items"]) == 5
    return body


async def metrics(http: httpx.AsyncClient, **query: str) -> dict[str, Any]:
    answer = await http.get("/api/v1/admin/model-metrics", params=query, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return {m["model_version"]: m for m in answer.json()["models"]}


async def test_clicks_and_conversions_per_model_version_survive_a_rebuild(
    services: Services, admin_client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    http = admin_client
    await add_catalog(db, movies=20)
    for n in range(8):  # a trend for cold starts to recommend from
        await post(http, "favorite", {"user_id": f"seed{n}", "movie_id": f"m{n}", "action": "add"})
    await wait_caught_up(services.pool)
    shown = {user: await shown_to(http, user) for user in ("a1", "a2", "b1", "b2", "late")}
    # Another model version served the b users (as an experiment's variant would).
    await db.execute(
        "UPDATE recommendations SET model_version = 'v2' WHERE user_id = ANY($1::text[])",
        ["b1", "b2"],
    )
    # `late` was shown its recommendation 25 h before it watched.
    await db.execute(
        "UPDATE recommendations SET created_at = now() - interval '25 hours' WHERE user_id = 'late'"
    )
    now = datetime.now(UTC)

    def first(user: str, k: int = 0) -> str:
        movie: str = shown[user]["items"][k]["movie_id"]
        return movie

    def click(user: str, movie: str, rid: str | None = None) -> dict[str, Any]:
        rid = rid or shown[user]["recommendation_id"]
        return {"user_id": user, "movie_id": movie, "action": "click", "recommendation_id": rid}

    unshown = next(
        f"m{n}" for n in range(20) if f"m{n}" not in {i["movie_id"] for i in shown["a1"]["items"]}
    )
    for body in (click("a1", first("a1")), click("a1", first("a1", 1)), click("a1", unshown)):
        await post(http, "feedback", body)
    await post(http, "feedback", click("a2", first("a2"), shown["b1"]["recommendation_id"]))
    await post(http, "feedback", click("b1", first("b1")))
    watch = {"user_id": "a1", "movie_id": first("a1"), "progress": 0.6, "occurred_at": at(now)}
    await post(http, "watch", watch)
    await post(http, "watch", {**watch, "progress": 0.9})  # the same (recommendation, movie)
    await post(http, "watch", {**watch, "movie_id": first("a1", 1), "progress": 0.3})
    await post(http, "rating", {"user_id": "a1", "movie_id": first("a1", 2), "rating": 3.5})
    before = now - timedelta(hours=1)  # happened before it was shown
    await post(
        http,
        "watch",
        {**watch, "user_id": "a2", "movie_id": first("a2"), "occurred_at": at(before)},
    )
    await post(http, "rating", {"user_id": "b2", "movie_id": first("b2"), "rating": 4})
    await post(http, "favorite", {"user_id": "b2", "movie_id": first("b2", 1), "action": "add"})
    await post(http, "watch", {"user_id": "late", "movie_id": first("late"), "progress": 1.0})
    await wait_caught_up(services.pool)

    found = await metrics(http, since=at(now - timedelta(hours=2)))
    assert found == {
        "popularity": {
            "model_version": "popularity",
            "recommendations": 2,
            "clicks": 1,  # a1's recommendation; a2 clicked on b1's, which is not a2's
            "ctr": 0.5,
            "conversions": 1,
            "conversion_rate": 0.5,
        },
        "v2": {
            "model_version": "v2",
            "recommendations": 2,
            "clicks": 1,
            "ctr": 0.5,
            "conversions": 2,
            "conversion_rate": 1.0,
        },
    }
    everything = await metrics(http, since=at(now - timedelta(days=2)))
    assert everything["popularity"]["recommendations"] == 3
    assert everything["popularity"]["conversions"] == 1  # late's watch came after 24 h
    assert await metrics(http, since=at(now + timedelta(minutes=1))) == {}
    assert (await metrics(http))["v2"]["conversions"] == 2  # default: the last 24 h

    scraped = (await http.get("/metrics")).text
    assert 'cinemate_model_conversions{model_version="v2"} 2.0' in scraped
    assert 'cinemate_model_ctr{model_version="popularity"} 0.5' in scraped

    live = (await snapshot(db))["recommendation_outcomes"]
    assert len(live) == 6  # a1: 2 clicks, 1 conversion; b1: 1 click; b2: 2 conversions
    await rebuild(services.pool, services.projections["recommendation_outcomes"])
    assert (await snapshot(db))["recommendation_outcomes"] == live
    assert await metrics(http, since=at(now - timedelta(hours=2))) == found

    assert (await http.delete("/api/v1/users/b2", headers=ADMIN)).status_code in (200, 202)
    assert (
        await db.fetchval("SELECT count(*) FROM recommendation_outcomes WHERE user_id = 'b2'") == 0
    )


async def test_model_metrics_is_an_admin_endpoint_with_a_checked_since(
    admin_client: httpx.AsyncClient,
) -> None:
    http = admin_client
    assert (await http.get("/api/v1/admin/model-metrics")).status_code == 401
    wrong = await http.get("/api/v1/admin/model-metrics", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 403
    for bad in (
        "",
        "0.5",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-05-01T00:00:00",
    ):  # no offset: ambiguous
        refused = await http.get(
            "/api/v1/admin/model-metrics", params={"since": bad}, headers=ADMIN
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["query", "since"]
    empty = await http.get("/api/v1/admin/model-metrics", headers=ADMIN)
    assert empty.status_code == 200 and empty.json()["models"] == []
