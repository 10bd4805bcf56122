"""Connection URLs and migrations."""

from __future__ import annotations

import json

import asyncpg
import pytest

from cinemate import database
from cinemate.embedded import POSTGRES_SETTINGS
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


async def test_user_items_migration_moves_each_item_out_of_the_state(
    db: asyncpg.Connection,
) -> None:
    """0012 on a table written before it: every state's items become rows of their own."""
    [sql] = [sql for name, sql in database.migration_files() if name.startswith("0012_")]
    await db.execute("DROP TABLE user_items")
    state = {
        "user_id": "old",
        "stream_version": 3,
        "counts": {"rating": 2},
        "items": {"m1": {"rating": 4.0, "at": "2026-01-01T00:00:00Z"}, "m2": {"progress": 0.5}},
    }
    await db.execute(
        "INSERT INTO user_features (user_id, stream_version, position, state, updated_at)"
        " VALUES ('old', 3, 9, $1::json, now())",
        json.dumps(state),
    )
    await db.execute(sql)
    rows = await db.fetch(
        "SELECT movie_id, signals::text FROM user_items WHERE user_id = 'old' ORDER BY 1"
    )
    assert [(r["movie_id"], json.loads(r["signals"])) for r in rows] == [
        ("m1", {"rating": 4.0, "at": "2026-01-01T00:00:00Z"}),
        ("m2", {"progress": 0.5}),
    ]
    left = json.loads(await db.fetchval("SELECT state::text FROM user_features"))
    assert left == {k: v for k, v in state.items() if k != "items"}


async def test_the_embedded_server_runs_with_its_wal_budget(db: asyncpg.Connection) -> None:
    """The tests run on the embedded server (DATABASE_URL unset), which a plain
    `cinemate serve` starts: it gets POSTGRES_SETTINGS, whatever initdb wrote."""
    assert {name: await db.fetchval(f"SHOW {name}") for name in POSTGRES_SETTINGS} == (
        POSTGRES_SETTINGS
    )


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
