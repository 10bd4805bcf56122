"""kill -9 of the service under load: nothing acknowledged is lost, retries store nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from cinemate.settings import Settings
from tests.test_cli_serve import free_port


def start_service(settings: Settings, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    assert settings.database_url and settings.redis_url
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "CINEMATE_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cinemate.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(base: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get("/api/v1/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("service did not come up")


async def test_kill_9_under_load_loses_nothing_acknowledged(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bodies = {
        uuid.uuid4(): {"user_id": f"load{i % 25}", "movie_id": f"m{i}", "progress": 0.5}
        for i in range(3000)
    }
    acknowledged: set[uuid.UUID] = set()
    enough = asyncio.Event()
    queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    for event_id in bodies:
        queue.put_nowait(event_id)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            while not queue.empty():
                event_id = queue.get_nowait()
                try:
                    answer = await http.post(
                        "/api/v1/events/watch", json={**bodies[event_id], "event_id": str(event_id)}
                    )
                    if answer.status_code in (200, 202):
                        acknowledged.add(event_id)
                        if len(acknowledged) >= 800:
                            enough.set()
                except httpx.HTTPError:
                    pass

    service = start_service(settings, port, tmp_path)
    await wait_ready(base)
    load = [asyncio.create_task(client()) for _ in range(16)]
    await asyncio.wait_for(enough.wait(), 60)
    service.send_signal(signal.SIGKILL)
    service.wait(10)
    await asyncio.gather(*load)
    before_restart = set(acknowledged)
    assert 800 <= len(before_restart) < len(bodies)

    service = start_service(settings, port, tmp_path)
    try:
        await wait_ready(base)
        # The client retries everything it sent or meant to send, with the same event ids.
        statuses: dict[int, int] = {}
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for event_id, body in bodies.items():
                answer = await http.post(
                    "/api/v1/events/watch", json={**body, "event_id": str(event_id)}
                )
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
    stored = [r["event_id"] for r in await db.fetch("SELECT event_id FROM interaction_events")]
    assert before_restart <= set(stored), "an acknowledged event was lost"
    assert len(stored) == len(set(stored)) == len(bodies), "an event was stored twice or lost"
    assert set(statuses) <= {200, 202} and statuses.get(200, 0) >= len(before_restart)
    print(
        f"acknowledged before kill -9: {len(before_restart)}; after retries: {len(stored)} "
        f"stored once each; retry answers {statuses}"
    )
