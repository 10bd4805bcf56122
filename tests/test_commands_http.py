"""The command endpoints against the real embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from cinemate.app import Services, build_app
from event_store.append import GroupCommitter

WATCH = {"user_id": "u1", "movie_id": "m1", "progress": 0.5}
KINDS: dict[str, dict[str, Any]] = {
    "/api/v1/events/watch": WATCH,
    "/api/v1/events/search": {"user_id": "u1", "query": "star wars", "results": ["m1", "m2"]},
    "/api/v1/events/rating": {"user_id": "u1", "movie_id": "m1", "rating": 4.5},
    "/api/v1/events/favorite": {"user_id": "u1", "movie_id": "m1", "action": "add"},
    "/api/v1/feedback": {
        "user_id": "u1",
        "movie_id": "m1",
        "recommendation_id": "r1",
        "action": "click",
        "rank": 2,
    },
}


async def count_events(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM interaction_events"))


async def test_every_kind_is_accepted_and_stored_in_order(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    positions = []
    for version, (path, body) in enumerate(KINDS.items(), start=1):
        answer = await client.post(path, json=body)
        assert answer.status_code == 202, answer.text
        data = answer.json()
        assert data["status"] == "accepted"
        assert data["stream_version"] == version
        positions.append(data["position"])
    assert positions == sorted(positions)
    stream = (await client.get("/api/v1/users/u1/events")).json()
    assert [e["type"] for e in stream["events"]] == [
        "watch",
        "search",
        "rating",
        "favorite",
        "feedback",
    ]
    assert stream["events"][1]["payload"]["results"] == ["m1", "m2"]
    assert stream["next_after"] is None
    assert await count_events(db) == 5


async def test_retry_is_a_duplicate_and_a_changed_body_a_conflict(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    body = {**WATCH, "event_id": str(uuid4())}
    first = await client.post("/api/v1/events/watch", json=body)
    again = await client.post("/api/v1/events/watch", json=body)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {**first.json(), "status": "duplicate"}
    changed = await client.post("/api/v1/events/watch", json={**body, "progress": 0.9})
    assert changed.status_code == 409
    assert changed.json()["error"] == "conflict"
    assert await count_events(db) == 1


async def test_batch_is_all_or_nothing(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    used = str(uuid4())
    await client.post(
        "/api/v1/events/rating",
        json={"user_id": "u2", "movie_id": "m", "rating": 3, "event_id": used},
    )
    items = [{"type": "watch", **WATCH} for _ in range(5)]
    conflicting = [
        *items,
        {"type": "rating", "user_id": "u2", "movie_id": "m", "rating": 4, "event_id": used},
    ]
    refused = await client.post("/api/v1/events/batch", json={"events": conflicting})
    assert refused.status_code == 409
    assert await count_events(db) == 1
    accepted = await client.post("/api/v1/events/batch", json={"events": items})
    assert accepted.status_code == 202
    results = accepted.json()["results"]
    assert [r["stream_version"] for r in results] == [1, 2, 3, 4, 5]
    assert await count_events(db) == 6


async def test_batch_replayed_whole_is_all_duplicates(client: httpx.AsyncClient) -> None:
    items = [
        {
            "type": "favorite",
            "user_id": f"u{i}",
            "movie_id": "m1",
            "action": "add",
            "event_id": str(uuid4()),
        }
        for i in range(3)
    ]
    first = await client.post("/api/v1/events/batch", json={"events": items})
    second = await client.post("/api/v1/events/batch", json={"events": items})
    assert first.status_code == 202 and second.status_code == 200
    assert [r["status"] for r in second.json()["results"]] == ["duplicate"] * 3
    assert [r["position"] for r in second.json()["results"]] == [
        r["position"] for r in first.json()["results"]
    ]


REJECTIONS: list[tuple[str, dict[str, str], bytes, int, str]] = [
    (
        "/api/v1/events/watch",
        {"content-type": "application/json"},
        b'{"user_id": "u1",',
        400,
        "malformed_json",
    ),
    (
        "/api/v1/events/watch",
        {"content-type": "text/plain"},
        b'{"user_id":"u1","movie_id":"m","progress":0.1}',
        415,
        "unsupported_media_type",
    ),
    (
        "/api/v1/events/watch",
        {},
        b'{"user_id":"u1","movie_id":"m","progress":0.1}',
        415,
        "unsupported_media_type",
    ),
    (
        "/api/v1/events/watch",
        {"content-type": "application/json"},
        b'{"user_id":"u1","movie_id":"m","progress":2}',
        422,
        "validation_error",
    ),
    (
        "/api/v1/events/search",
        {"content-type": "application/json"},
        b'{"user_id":"u1","query":""}',
        422,
        "validation_error",
    ),
    (
        "/api/v1/events/favorite",
        {"content-type": "application/json"},
        b'{"user_id":"u1","movie_id":"m","action":"toggle"}',
        422,
        "validation_error",
    ),
    (
        "/api/v1/feedback",
        {"content-type": "application/json"},
        b'{"user_id":"u1","movie_id":"m","recommendation_id":"r","action":"click","rank":0}',
        422,
        "validation_error",
    ),
    (
        "/api/v1/events/batch",
        {"content-type": "application/json"},
        b'{"events": []}',
        422,
        "validation_error",
    ),
    (
        "/api/v1/events/batch",
        {"content-type": "application/json"},
        b'{"events": [{"type":"watch","user_id":"u1","movie_id":"m","progress":0.2},'
        b'{"type":"teleport","user_id":"u1"}]}',
        422,
        "validation_error",
    ),
    (
        "/api/v1/events/watch",
        {"content-type": "application/json"},
        b"[1, 2]",
        422,
        "validation_error",
    ),
    (
        "/api/v1/events/watch",
        {"content-type": "application/json"},
        b'{"user_id":"u1","movie_id":"m","progress":0.5,"pad":"' + b"x" * (1024 * 1024) + b'"}',
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(("path", "headers", "body", "status", "error"), REJECTIONS)
async def test_rejections_store_nothing(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    error: str,
) -> None:
    answer = await client.post(path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    if status == 422:
        assert all({"loc", "msg", "type"} <= set(item) for item in answer.json()["detail"])
    assert await count_events(db) == 0


async def test_batch_with_a_repeated_event_id_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    event_id = str(uuid4())
    items = [{"type": "watch", **WATCH, "event_id": event_id}] * 2
    answer = await client.post("/api/v1/events/batch", json={"events": items})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "events", 1, "event_id"]
    assert await count_events(db) == 0


async def test_store_unreachable_is_a_503_with_retry_after(services: Services) -> None:
    dead = await asyncpg.create_pool(
        "postgresql://postgres@/postgres?host=/nonexistent", min_size=0, max_size=1
    )
    committer = GroupCommitter(dead)
    committer.start()
    try:
        broken = dataclasses.replace(services, pool=dead, committer=committer)
        transport = httpx.ASGITransport(app=build_app(broken))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            answer = await http.post("/api/v1/events/watch", json=WATCH)
            health = await http.get("/api/v1/health/ready")
    finally:
        await committer.stop()
        await dead.close()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"] == "unavailable"
    assert "Traceback" not in answer.text
    assert health.status_code == 503


async def test_concurrent_retries_of_one_event_store_it_once(
    services: Services, database_url: str, db: asyncpg.Connection
) -> None:
    """Retries race through separate pools and committers, as from separate processes."""
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=1) for _ in range(8)]
    committers = [GroupCommitter(pool, concurrency=1) for pool in pools]
    for committer in committers:
        committer.start()
    try:
        body = {**WATCH, "user_id": "racer", "event_id": str(uuid4())}
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(
                    app=build_app(dataclasses.replace(services, pool=p, committer=c))
                ),
                base_url="http://c",
            )
            for p, c in zip(pools, committers, strict=True)
        ]
        answers = await asyncio.gather(
            *(clients[i % 8].post("/api/v1/events/watch", json=body) for i in range(32))
        )
        for http in clients:
            await http.aclose()
    finally:
        for committer in committers:
            await committer.stop()
        for pool in pools:
            await pool.close()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 31 + [202]
    assert len({a.json()["position"] for a in answers}) == 1
    assert (
        await db.fetchval("SELECT count(*) FROM interaction_events WHERE originator_id='racer'")
        == 1
    )


async def test_store_refuses_updates_deletes_and_truncate(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await client.post("/api/v1/events/watch", json=WATCH)
    for sql in (
        "UPDATE interaction_events SET payload = '{}'",
        "DELETE FROM interaction_events",
        "TRUNCATE interaction_events",
    ):
        with pytest.raises(asyncpg.RestrictViolationError):
            await db.execute(sql)
    assert await count_events(db) == 1


async def test_user_events_pages_and_404(client: httpx.AsyncClient) -> None:
    items = [
        {"type": "rating", "user_id": "pager", "movie_id": f"m{i}", "rating": 3} for i in range(5)
    ]
    await client.post("/api/v1/events/batch", json={"events": items})
    page = (await client.get("/api/v1/users/pager/events?after=1&limit=2")).json()
    assert [e["stream_version"] for e in page["events"]] == [2, 3]
    assert page["next_after"] == 3
    assert (await client.get("/api/v1/users/nobody/events")).status_code == 404
    assert (await client.get("/api/v1/users/pager/events?limit=0")).status_code == 422
    assert (await client.get("/api/v1/users/bad%20id/events")).status_code == 422


async def test_next_after_is_null_on_the_page_holding_the_last_event(
    client: httpx.AsyncClient,
) -> None:
    items = [
        {"type": "rating", "user_id": "pages12", "movie_id": f"m{i}", "rating": 3}
        for i in range(12)
    ]
    await client.post("/api/v1/events/batch", json={"events": items})
    marks: list[int | None] = []
    after: int | None = 0
    while after is not None:
        page = (await client.get(f"/api/v1/users/pages12/events?after={after}&limit=3")).json()
        assert page["events"], "no empty page is ever handed out"
        after = page["next_after"]
        marks.append(after)
    assert marks == [3, 6, 9, None]
    # A page that is not full also holds the last event.
    tail = (await client.get("/api/v1/users/pages12/events?after=10&limit=5")).json()
    assert [e["stream_version"] for e in tail["events"]] == [11, 12]
    assert tail["next_after"] is None


async def test_a_repeated_query_parameter_is_refused(client: httpx.AsyncClient) -> None:
    """No parameter of the API is a list: `after=1&after=` is a 422, not the last one."""
    await client.post(
        "/api/v1/events/watch", json={"user_id": "rep", "movie_id": "m", "progress": 1}
    )
    answer = await client.get("/api/v1/users/rep/events?after=1&after=")
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "after"]
    assert (await client.get("/api/v1/popular?genre=A&genre=B")).status_code == 422
    assert (await client.get("/api/v1/users/rep/events?after=0")).status_code == 200


async def test_openapi_and_offline_docs(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "/api/v1/events/batch" in document["paths"]
    assert "WatchCommand" in document["components"]["schemas"]
    page = await client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    script = await client.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


async def test_unknown_path_answers_json_with_request_id(client: httpx.AsyncClient) -> None:
    answer = await client.get("/nope", headers={"X-Request-ID": "abc-123"})
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert answer.headers["x-request-id"] == "abc-123"


async def test_a_method_not_allowed_answers_405_with_allow(client: httpx.AsyncClient) -> None:
    """RFC 9110: a 405 lists the methods the resource supports."""
    answer = await client.request("TRACE", "/api/v1/admin/projections")
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
    assert {m.strip() for m in answer.headers["allow"].split(",")} == {"GET", "HEAD"}
    delete = await client.delete("/api/v1/events/watch")
    assert delete.status_code == 405 and delete.headers["allow"] == "POST"


async def test_a_query_parameter_given_twice_is_refused(client: httpx.AsyncClient) -> None:
    """Each is one value in the schema (an integer, a string): two are not one of them."""
    await client.post("/api/v1/events/watch", json=WATCH)
    for url in (
        "/api/v1/users/u1/events?after=1&after=",
        "/api/v1/users/u1/events?limit=1&limit=2",
        "/api/v1/popular?genre=Comedy&genre=Drama",
        "/api/v1/recommend/u1?exclude=m1&exclude=m2",
        "/api/v1/recommend/u1?genre=a&genre=",
        "/api/v1/movies/m1/similar?limit=2&limit=3",
        "/api/v1/movies/m1/similar?limit=",  # not an integer either
        "/api/v1/users/u1/events?after=",
    ):
        answer = await client.get(url)
        assert answer.status_code == 422, url
        assert answer.json()["detail"][0]["loc"][0] == "query", url
