"""Randomised bodies against every command endpoint: never a 5xx, and a refused request
stores nothing. Seeded, so a failure replays."""

from __future__ import annotations

import json
import random
from typing import Any

import asyncpg
import httpx

FIELDS: dict[str, list[str]] = {
    "/api/v1/events/watch": ["user_id", "movie_id", "progress", "watched_seconds"],
    "/api/v1/events/search": ["user_id", "query", "results", "clicked_movie_id"],
    "/api/v1/events/rating": ["user_id", "movie_id", "rating"],
    "/api/v1/events/favorite": ["user_id", "movie_id", "action"],
    "/api/v1/feedback": ["user_id", "movie_id", "recommendation_id", "action", "rank"],
}
COMMON = ["event_id", "occurred_at", "context", "type", "unexpected"]
VALID: dict[str, Any] = {
    "user_id": "f1",
    "movie_id": "m1",
    "progress": 0.5,
    "watched_seconds": 60,
    "query": "q",
    "results": ["m1"],
    "clicked_movie_id": "m1",
    "rating": 4.0,
    "action": "add",
    "recommendation_id": "r1",
    "rank": 1,
}


def wild_value(rng: random.Random, depth: int = 0) -> Any:
    choices: list[Any] = [
        None,
        True,
        False,
        0,
        -1,
        1,
        0.5,
        1.5,
        2**70,
        -1e308,
        "",
        "u1",
        "m1",
        "add",
        "click",
        "remove",
        "x" * rng.choice([1, 65, 300, 3000]),
        "bad id!",
        "émile",
        "\u0000",
        "2026-11-26T10:00:00Z",
        "2999-01-01T00:00:00Z",
        "2026-11-26T10:00:00",
        "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "not-a-uuid",
        rng.uniform(-10, 10),
        rng.randint(-5, 10) / 2,
    ]
    if depth < 2:
        choices += [
            [wild_value(rng, depth + 1) for _ in range(rng.randint(0, 4))],
            {"k": wild_value(rng, depth + 1)},
        ]
    return rng.choice(choices)


def wild_body(rng: random.Random, fields: list[str]) -> bytes:
    """Malformed bytes, well-formed commands, or anything in between."""
    roll = rng.random()
    if roll < 0.05:
        return rng.choice([b"", b"{", b"[]", b"null", b"42", b'{"a":', b"\xff\xfe"])
    if roll < 0.3:  # well-formed, one field perhaps broken: reaches the valid paths too
        body = {name: VALID[name] for name in fields}
        if "rank" in fields:
            body["action"] = "click"
        if roll < 0.1:
            body[rng.choice(fields)] = wild_value(rng)
    else:
        body = {name: wild_value(rng) for name in fields + COMMON if rng.random() < 0.7}
    return json.dumps(body).encode()  # the json module also writes integers past 64 bits


async def test_no_body_gets_a_5xx_and_refusals_store_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    rng = random.Random(2026)
    cases = statuses = 0
    seen: dict[int, int] = {}
    for _ in range(120):
        for path, fields in FIELDS.items():
            before = await db.fetchval("SELECT count(*) FROM interaction_events")
            body = wild_body(rng, fields)
            content_type = rng.choice(["application/json"] * 9 + ["text/plain"])
            answer = await client.post(path, content=body, headers={"content-type": content_type})
            after = await db.fetchval("SELECT count(*) FROM interaction_events")
            cases += 1
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, (path, body, answer.text)
            assert answer.headers["content-type"].startswith("application/json")
            if answer.status_code >= 400:
                assert after == before, (path, body, answer.status_code)
                statuses += 1
            else:
                assert after in (before, before + 1)
    assert cases == 600
    assert seen.get(202, 0) > 20 and seen.get(422, 0) > 100 and seen.get(415, 0) > 10
