"""Recommendation records: group-committed before the answer, so feedback sent the moment
the answer arrives is credited to the model that produced it; bounded; failures reach the
requests whose records failed, and the writer goes on."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import asyncpg
import httpx
import pytest

from cinemate.app import Services, build_app
from query_side.recommendation_log import RecommendationLog, Record
from tests.projection_helpers import wait_caught_up
from tests.test_recommend import COMEDIES, HORRORS, planted_model


async def test_feedback_at_once_after_concurrent_answers_is_attributed(
    services: Services, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await db.executemany(
        "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, '{Comedy}')",
        [(m, m) for m in COMEDIES + HORRORS],
    )
    await services.models.load(planted_model(tmp_path / "planted.npz"))
    version = services.models.current.model.metadata["version"]  # type: ignore[union-attr]
    users = [f"quick{i}" for i in range(40)]
    events = [
        {"type": "rating", "user_id": u, "movie_id": COMEDIES[i % 5], "rating": 5}
        for i, u in enumerate(users)
    ]
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
        assert (await http.post("/api/v1/events/batch", json={"events": events})).status_code == 202
        await wait_caught_up(services.pool)
        log = services.recommendation_log
        assert log is not None
        batches_before, rows_before = log.batches, log.rows

        async def shown_then_clicked(user: str) -> str:
            shown = (await http.get(f"/api/v1/recommend/{user}?limit=3")).json()
            feedback = {
                "user_id": user,
                "movie_id": shown["items"][0]["movie_id"],
                "action": "click",
                "recommendation_id": shown["recommendation_id"],
            }
            assert (await http.post("/api/v1/feedback", json=feedback)).status_code == 202
            return str(shown["recommendation_id"])

        ids = await asyncio.gather(*(shown_then_clicked(u) for u in users))
    rows = log.rows - rows_before
    assert rows == len(users)
    assert log.batches - batches_before < rows  # concurrent answers shared inserts
    await wait_caught_up(services.pool)
    credited = await db.fetch(
        "SELECT recommendation_id, model_version, strategy, shown FROM model_feedback"
    )
    assert sorted(r["recommendation_id"] for r in credited) == sorted(ids)
    assert {(r["model_version"], r["strategy"], r["shown"]) for r in credited} == {
        (version, "personalized", True)
    }


async def test_pending_records_are_bounded_and_all_written(
    services: Services, db: asyncpg.Connection
) -> None:
    log = RecommendationLog(services.pool, max_batch=3, max_pending=5)
    log.start()
    most = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, log._queue.qsize())
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(
        *(log.record(Record(f"bound{i}", "u", "v1", "personalized", ["a", "b"])) for i in range(60))
    )
    done.set()
    await watcher
    await log.stop()
    assert 0 < most <= 5
    assert log.rows == 60 and log.batches >= 20  # at most 3 rows a batch
    stored = await db.fetch(
        "SELECT recommendation_id, items FROM recommendations WHERE user_id = 'u'"
    )
    assert len(stored) == 60 and all(r["items"] == ["a", "b"] for r in stored)


async def test_a_failed_insert_fails_its_requests_and_the_writer_goes_on(
    services: Services, db: asyncpg.Connection
) -> None:
    log = RecommendationLog(services.pool)
    log.start()
    await log.record(Record("dup", "u", "v1", "cold_start", []))
    with pytest.raises(asyncpg.UniqueViolationError):
        await log.record(Record("dup", "u", "v1", "cold_start", []))
    await log.record(Record("after", "u", "v1", "cold_start", ["x"]))
    await log.stop()
    assert await db.fetchval(
        "SELECT items FROM recommendations WHERE recommendation_id = 'after'"
    ) == ["x"]
    assert (
        await db.fetchval("SELECT items FROM recommendations WHERE recommendation_id = 'dup'") == []
    )


async def test_without_a_writer_records_are_inserted_directly(services: Services) -> None:
    log = RecommendationLog(services.pool)  # not started: a tool, a test app
    await log.record(Record("alone", "u", "v1", "cold_start", ["m1"]))
    async with services.pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT items FROM recommendations WHERE recommendation_id = 'alone'"
        ) == ["m1"]


def test_record_is_a_plain_value() -> None:
    assert dataclasses.astuple(Record("r", "u", "v", "s", ["m"])) == ("r", "u", "v", "s", ["m"])
