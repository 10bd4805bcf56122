"""Reads served from bounded copies: GET /popular at most a second old, per genre."""

from __future__ import annotations

import asyncio

import asyncpg

from cinemate.app import Services
from query_side.popular import MAX_LIMIT, PopularCache, popular


async def stats(db: asyncpg.Connection, rows: list[tuple[str, float]]) -> None:
    await db.executemany(
        "INSERT INTO item_stats (movie_id, interactions, score, score_at, trend_key) "
        "VALUES ($1, 1, 1, 0, $2) ON CONFLICT (movie_id) DO UPDATE SET trend_key = $2",
        rows,
    )


async def test_popular_copy_is_at_most_max_age_and_one_read_old(
    services: Services, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO movies (movie_id, title, genres) VALUES "
        "('a', 'A', '{Comedy}'), ('b', 'B', '{Drama}'), ('c', 'C', '{Comedy}')"
    )
    await stats(db, [("a", 3.0), ("b", 2.0), ("c", 1.0)])
    copies = PopularCache(services.pool, max_age=0.3)
    first = await copies.get(None, 2)
    assert [i["movie_id"] for i in first] == ["a", "b"]
    assert [i["movie_id"] for i in await copies.get("Comedy", 5)] == ["a", "c"]
    await stats(db, [("c", 9.0)])
    # Within max_age: the copy (the same answer a direct read gave a moment ago).
    assert [i["movie_id"] for i in await copies.get(None, 2)] == ["a", "b"]
    await asyncio.sleep(0.35)
    # Expired: this request is answered from the copy and starts the read of the next.
    assert [i["movie_id"] for i in await copies.get(None, 3)] == ["a", "b", "c"]
    fresh = await until_changed(copies, None, 3)
    assert fresh == await popular(services.pool, None, 3)
    assert [i["movie_id"] for i in fresh] == ["c", "a", "b"]
    await copies.get("Comedy", 1)
    assert [i["movie_id"] for i in await until_changed(copies, "Comedy", 1)] == ["c"]


async def until_changed(
    copies: PopularCache, genre: str | None, limit: int
) -> list[dict[str, object]]:
    """The copy's answer once the read started by an expired copy is in (at most 1 s)."""
    first = await copies.get(genre, limit)
    for _ in range(100):
        await asyncio.sleep(0.01)
        answer = await copies.get(genre, limit)
        if answer != first:
            return answer
    return first


class CountingCache(PopularCache):
    reads = 0

    async def _read(self, genre: str | None) -> list[dict[str, object]]:
        self.reads += 1
        return await super()._read(genre)


async def test_concurrent_requests_share_one_read_and_copies_are_bounded(
    services: Services, db: asyncpg.Connection
) -> None:
    await stats(db, [(f"m{i}", float(i)) for i in range(150)])
    copies = CountingCache(services.pool, max_bytes=200_000)
    answers = await asyncio.gather(*(copies.get(None, 100) for _ in range(50)))
    assert all(a == answers[0] for a in answers) and len(answers[0]) == MAX_LIMIT
    assert copies.reads == 1
    for n in range(300):  # genres are whatever clients send
        await copies.get(f"genre{n}", 10)
    assert copies.held_bytes <= 200_000
