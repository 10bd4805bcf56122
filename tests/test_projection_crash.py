"""A real projection process killed with SIGKILL mid-stream resumes without loss or doubles."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from cinemate.app import Services
from projections.rebuild import rebuild
from tests.projection_helpers import (
    PROJECTIONS,
    add_catalog,
    append_random,
    snapshot,
    wait_caught_up,
)


def start_worker(database_url: str, redis_url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CINEMATE_DATA_DIR": str(data_dir),
        "CINEMATE_PROJECTION_BATCH": "97",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cinemate.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def applied_so_far(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(position), 0) FROM projection_checkpoints WHERE name = ANY($1)",
            PROJECTIONS,
        )
    )


async def test_killed_worker_resumes_with_no_lost_or_doubled_effect(
    settings_without_projectors: Services,
    database_url: str,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    services = settings_without_projectors
    await add_catalog(db)
    appended = await append_random(services.committer, total=12000, users=400, seed=11)
    assert services.settings.redis_url is not None
    kills = 0
    for _ in range(3):
        worker = start_worker(database_url, services.settings.redis_url, tmp_path)
        before = await applied_so_far(db)
        # Kill while it is busy: once its checkpoints have started moving.
        for _ in range(600):
            await asyncio.sleep(0.05)
            if await applied_so_far(db) > before:
                break
        await asyncio.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        kills += 1
    report_lag = await db.fetchval(
        "SELECT count(*) FROM interaction_events AS e, projection_checkpoints AS c "
        "WHERE c.name = 'user_features' AND (e.tx_id, e.position) > (c.tx_id, c.position)"
    )
    assert report_lag > 0, "the kills should land before the work is done"

    worker = start_worker(database_url, services.settings.redis_url, tmp_path)
    try:
        started = time.monotonic()
        await wait_caught_up(services.pool, within=180)
        print(
            f"caught up in {time.monotonic() - started:.1f} s after {kills} kills, "
            f"{report_lag} events left"
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    after_crashes = await snapshot(db)
    assert kills == 3
    assert len(after_crashes["audit"]) == appended
    interactions = await db.fetchval("SELECT sum(interactions) FROM item_stats")
    with_movie = await db.fetchval(
        "SELECT count(*) FROM interaction_events WHERE payload->>'movie_id' IS NOT NULL "
        "OR payload->>'clicked_movie_id' IS NOT NULL"
    )
    assert interactions == with_movie
    for name in PROJECTIONS:
        await rebuild(services.pool, services.projections[name])
    rebuilt = await snapshot(db)
    for name in after_crashes:
        for got, want in zip(after_crashes[name], rebuilt[name], strict=True):
            if got != want:
                print("DIFF", name, got[:3], want[:3])
                if name == "user_features":
                    for key in got[3]:
                        if got[3][key] != want[3][key]:
                            print(" state", key, got[3][key], "|||", want[3][key])
        assert rebuilt[name] == after_crashes[name], name
