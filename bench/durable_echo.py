"""The durable baseline for bench/ingest: the echo's stack (starlette + pydantic + uvicorn
validating the same watch body) that also commits each request's row to PostgreSQL with
asyncpg before answering, and nothing else: no streams, no group commit of ours, no
projections, no Kafka.

It tells what this machine's PostgreSQL and these libraries give a durable
acknowledgement on their own, in the same run: the ceiling the service's single POSTs
can be held against. Two ways:

- per request (the default): each request commits its own INSERT from a pool of
  sixteen connections; PostgreSQL merges the WAL flushes of commits that wait together.
- `--grouped`: requests wait in a queue, and one writer commits all that wait in one
  multi-row INSERT, then the next group: the least a group commit can cost (no streams,
  versions, idempotency or back-pressure, which the service's has).

Batches (`POST /api/v1/events/batch`, the same body as the service's) are validated with
the service's own batch contract and committed, each in one INSERT of all its rows, from
the same pool, whichever mode: the least that acknowledging a batch durably costs.

It uses the data dir's PostgreSQL server (started by whichever process comes first, as
every cinemate process does), in a database of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import orjson
import uvloop
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cinemate import database
from cinemate.infrastructure import Infrastructure
from cinemate.server import server
from cinemate.settings import Settings
from event_store.stopping import cancel_and_wait
from schema.commands import ADAPTERS, BatchCommand, WatchCommand

DATABASE = "durable_echo"
POOL_SIZE = 16  # as the service's own pool
TABLE_SQL = """
CREATE TABLE IF NOT EXISTS echo_events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    user_id text NOT NULL,
    body json NOT NULL,  -- as the store keeps its payloads (migration 0015)
    received_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT_SQL = """
INSERT INTO echo_events (event_id, user_id, body) VALUES ($1, $2, $3::json) RETURNING position
"""
GROUP_SQL = """
INSERT INTO echo_events (event_id, user_id, body)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::json[]) RETURNING position
"""
Row = tuple[uuid.UUID, str, str]
BATCH = ADAPTERS["batch"]
Append = Callable[[Row], Awaitable[int]]


async def open_pool(server_url: str) -> asyncpg.Pool:
    admin = await asyncpg.connect(database.asyncpg_dsn(server_url))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    pool = await asyncpg.create_pool(
        database.asyncpg_dsn(server_url), database=DATABASE, min_size=POOL_SIZE, max_size=POOL_SIZE
    )
    assert pool is not None
    await pool.execute(TABLE_SQL)
    return pool


class GroupWriter:
    """One writer committing every row that waits, in one statement per group."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.waiting: list[tuple[Row, asyncio.Future[int]]] = []
        self.wake = asyncio.Event()

    async def append(self, row: Row) -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.append((row, done))
        self.wake.set()
        return await done

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            group, self.waiting = self.waiting, []
            columns = list(zip(*(row for row, _ in group), strict=True))
            try:
                positions = await self.pool.fetch(GROUP_SQL, *columns)
            except Exception as exc:
                for _, done in group:
                    done.set_exception(exc)
                continue
            for (_, done), found in zip(group, positions, strict=True):
                done.set_result(found["position"])


def per_request(pool: asyncpg.Pool) -> Append:
    async def append(row: Row) -> int:
        position: int = await pool.fetchval(INSERT_SQL, *row)
        return position

    return append


def durable_batch(pool: asyncpg.Pool) -> Callable[[Request], Awaitable[Response]]:
    async def batch(request: Request) -> Response:
        body = await request.body()
        try:
            commands: BatchCommand = BATCH.validate_json(body)
        except ValidationError as exc:
            return JSONResponse({"error": "validation_error", "detail": exc.errors()}, 422)
        # Each event's row holds the event as the client wrote it.
        written = [orjson.dumps(event).decode() for event in orjson.loads(body)["events"]]
        ids = [command.event_id or uuid.uuid4() for command in commands.events]
        users = [command.user_id for command in commands.events]
        positions = await pool.fetch(GROUP_SQL, ids, users, written)
        results = [
            {
                "event_id": str(i),
                "position": row["position"],
                "stream_version": 0,
                "status": "accepted",
            }
            for i, row in zip(ids, positions, strict=True)
        ]
        return Response(orjson.dumps({"results": results}), 202, media_type="application/json")

    return batch


def build(append: Append, pool: asyncpg.Pool) -> Starlette:
    async def durable_watch(request: Request) -> Response:
        body = await request.body()
        try:
            command = WatchCommand.model_validate_json(body)
        except ValidationError as exc:
            return JSONResponse({"error": "validation_error", "detail": exc.errors()}, 422)
        event_id = command.event_id or uuid.uuid4()
        position = await append((event_id, command.user_id, body.decode()))
        answer = {
            "event_id": str(event_id),
            "position": position,
            "stream_version": 0,
            "status": "accepted",
        }
        return JSONResponse(answer, 202)

    return Starlette(
        routes=[
            Route("/api/v1/events/watch", durable_watch, methods=["POST"]),
            Route("/api/v1/events/batch", durable_batch(pool), methods=["POST"]),
        ]
    )


async def serve(server_url: str, port: int, grouped: bool) -> None:
    pool = await open_pool(server_url)
    writer = GroupWriter(pool)
    running = asyncio.create_task(writer.run()) if grouped else None
    try:
        app = build(writer.append if grouped else per_request(pool), pool)
        await server(app, "127.0.0.1", port, guard=False).serve()
    finally:
        if running is not None:
            await cancel_and_wait([running])
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the data dir whose PostgreSQL to use (default: $CINEMATE_DATA_DIR)",
    )
    parser.add_argument(
        "--grouped", action="store_true", help="one writer commits every waiting row at once"
    )
    args = parser.parse_args()
    env = dict(os.environ)
    if args.data_dir:
        env["CINEMATE_DATA_DIR"] = str(args.data_dir)
    infrastructure = Infrastructure.start(Settings.from_env(env))
    try:
        uvloop.run(serve(infrastructure.database_url, args.port, args.grouped))
    finally:
        infrastructure.stop()


if __name__ == "__main__":
    main()
