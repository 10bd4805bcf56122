"""PostgreSQL connections and schema migrations."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from importlib import resources

import asyncpg

from event_store import locks

log = logging.getLogger("cinemate.database")

MIGRATIONS_PACKAGE = "schema.migrations"
# Any fixed number works: it only has to be the same in every process that migrates.


def asyncpg_dsn(url: str) -> str:
    """Accept SQLAlchemy-style `postgresql+asyncpg://` URLs as well as plain ones."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection back in a read pool keeps its session: asyncpg still rolls back an
    open transaction, but sends no reset query (RESET ALL, UNLISTEN *, CLOSE ALL,
    pg_advisory_unlock_all()), one round trip per request that single SELECTs never need."""


async def create_pool(
    url: str, *, min_size: int = 2, max_size: int = 10, reads_only: bool = False
) -> asyncpg.Pool:
    """`reads_only`: for callers that only run plain SELECTs outside transactions (no
    SET, LISTEN, cursors or session locks), whose sessions need no reset on release."""
    pool = await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        max_inactive_connection_lifetime=300,
        reset=_keep_session if reads_only else None,
    )
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool, grace_seconds: float = 10.0) -> None:
    """Close gracefully, but never wait forever on a connection stuck in a query."""
    try:
        await asyncio.wait_for(pool.close(), grace_seconds)
    except TimeoutError:
        log.warning("database pool did not close in time; terminating its connections")
        pool.terminate()


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in the order their names sort."""
    folder = resources.files(MIGRATIONS_PACKAGE)
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return files


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not applied yet, each in its own transaction. Returns their names."""
    applied: list[str] = []
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            name text PRIMARY KEY,
            sha256 text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    for name, sql in migration_files():
        digest = hashlib.sha256(sql.encode()).hexdigest()
        async with conn.transaction():
            # Two processes starting together must not both apply one migration.
            await locks.lock_migrations(conn)
            known = await conn.fetchval(
                "SELECT sha256 FROM schema_migrations WHERE name = $1", name
            )
            if known is not None:
                if known != digest:
                    log.warning("migration %s changed after it was applied", name)
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)", name, digest
            )
            applied.append(name)
            log.info("applied migration %s", name)
    return applied
