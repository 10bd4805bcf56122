"""PostgreSQL stopped and started under load: 503s with Retry-After meanwhile, recovery
without restarting the service, nothing acknowledged lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pgserver
from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

from cinemate import database
from cinemate.embedded import EmbeddedPostgres
from cinemate.infrastructure import Infrastructure
from tests.test_cli_serve import free_port
from tests.test_reliability_kill import wait_ready


def launch(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "cinemate.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )


def stop_postgres(pgdata: Path) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user="pgserver")


def start_postgres(pgdata: Path) -> None:
    server = pgserver.get_server(pgdata)
    with server._lock:
        server.ensure_postgres_running()


async def test_postgres_restart_under_load(infrastructure: Infrastructure, tmp_path: Path) -> None:
    postgres = EmbeddedPostgres(tmp_path)
    url = postgres.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": infrastructure.redis_url,
        "CINEMATE_DATA_DIR": str(tmp_path),
        "LOG_LEVEL": "ERROR",
    }
    service = launch(env, port, tmp_path / "serve.log")
    acknowledged: set[uuid.UUID] = set()
    statuses: dict[int, int] = {}
    retry_after: set[str | None] = set()
    stop = asyncio.Event()

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            i = 0
            while not stop.is_set():
                i += 1
                event_id = uuid.uuid4()
                try:
                    answer = await http.post(
                        "/api/v1/events/rating",
                        json={
                            "user_id": f"pg{n}",
                            "movie_id": f"m{i}",
                            "rating": 3,
                            "event_id": str(event_id),
                        },
                    )
                except httpx.HTTPError:
                    statuses[-1] = statuses.get(-1, 0) + 1
                    await asyncio.sleep(0.05)
                    continue
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 202:
                    acknowledged.add(event_id)
                elif answer.status_code == 503:
                    retry_after.add(answer.headers.get("retry-after"))
                    await asyncio.sleep(0.05)

    try:
        await wait_ready(base)
        load = [asyncio.create_task(client(n)) for n in range(8)]
        await asyncio.sleep(1.0)
        before = len(acknowledged)
        await asyncio.to_thread(stop_postgres, postgres.pgdata)
        await asyncio.sleep(2.0)
        during = len(acknowledged)
        await asyncio.to_thread(start_postgres, postgres.pgdata)
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*load)
        after = len(acknowledged)
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
    conn = await asyncpg.connect(database.asyncpg_dsn(url))
    try:
        stored = {
            r["event_id"] for r in await conn.fetch("SELECT event_id FROM interaction_events")
        }
    finally:
        await conn.close()
        postgres.stop()
    assert before > 0
    assert statuses.get(503, 0) > 0 and retry_after == {"1"}
    errors = [line for line in (tmp_path / "serve.log").read_text().splitlines() if "error" in line]
    assert set(statuses) <= {202, 503}, (statuses, errors[:3])
    assert after > during, "the service did not recover without a restart"
    assert acknowledged <= stored, "an acknowledged event was lost"
    print(
        f"acknowledged {before} before the stop, {during} by its end, {after} after the "
        f"restart; answers {statuses}"
    )
