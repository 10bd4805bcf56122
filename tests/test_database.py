"""Connection URLs and migrations."""

from __future__ import annotations

import asyncpg
import pytest

from cinemate import database
from cinemate.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql+asyncpg://u:p@db:5432/app", "postgresql://u:p@db:5432/app"),
        ("postgres+asyncpg://db/app", "postgresql://db/app"),
        ("postgresql://db/app", "postgresql://db/app"),
    ],
)
def test_sqlalchemy_style_urls_are_accepted(given: str, expected: str) -> None:
    assert database.asyncpg_dsn(given) == expected


def test_settings_refuse_a_flag_that_is_not_a_boolean() -> None:
    with pytest.raises(SettingsError, match="ENABLE_KAFKA"):
        Settings.from_env({"ENABLE_KAFKA": "sometimes"})
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9092"})
    assert settings.enable_kafka and settings.enable_consumers


async def test_migrations_are_recorded_and_applied_once(db: asyncpg.Connection) -> None:
    names = [name for name, _ in database.migration_files()]
    recorded = [r["name"] for r in await db.fetch("SELECT name FROM schema_migrations ORDER BY 1")]
    assert recorded == names
    assert await database.migrate(db) == []


@pytest.mark.parametrize("reads_only", [False, True])
async def test_a_reads_only_pool_skips_the_session_reset_but_not_the_rollback(
    database_url: str, reads_only: bool
) -> None:
    pool = await database.create_pool(database_url, min_size=1, max_size=1, reads_only=reads_only)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'kept'")
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid  # the same session
            name = await conn.fetchval("SHOW application_name")
            assert (name == "kept") is reads_only
            tx = conn.transaction()
            await tx.start()  # left open on purpose (not the `async with` form)
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
    finally:
        await pool.close()
