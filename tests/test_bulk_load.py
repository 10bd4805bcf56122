"""A table loaded with its indexes built after: the same indexes and constraints after as
before, none while loading, and all of them back when loading fails."""

from __future__ import annotations

import asyncpg
import pytest

from projections.bulk_load import indexes_built_after

SCHEMA = """
CREATE TABLE bulk_a (
    id integer PRIMARY KEY,
    code text NOT NULL,
    "Odd name" text,
    UNIQUE (code)
);
CREATE INDEX bulk_a_lower ON bulk_a (lower(code)) WHERE id > 0;
CREATE INDEX "bulk a quoted" ON bulk_a ("Odd name" DESC);
CREATE TABLE bulk_b (k text, v integer);
CREATE INDEX bulk_b_k ON bulk_b (k, v);
"""
INDEXES_SQL = """
SELECT t.relname, pg_get_indexdef(i.oid)
FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid
JOIN pg_class AS t ON t.oid = x.indrelid
WHERE t.relname IN ('bulk_a', 'bulk_b')
"""
CONSTRAINTS_SQL = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid IN ('bulk_a'::regclass, 'bulk_b'::regclass)
"""


async def _indexes(db: asyncpg.Connection) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in await db.fetch(INDEXES_SQL)}


async def _constraints(db: asyncpg.Connection) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in await db.fetch(CONSTRAINTS_SQL)}


async def test_indexes_are_dropped_while_loading_and_built_again_as_they_were(
    db: asyncpg.Connection,
) -> None:
    await db.execute(SCHEMA)
    indexes, constraints = await _indexes(db), await _constraints(db)
    assert len(indexes) == 5
    async with db.transaction():
        async with indexes_built_after(db, ["bulk_a", "bulk_b"]):
            assert await _indexes(db) == set()
            assert {name for name, _ in await _constraints(db)} <= {
                name for name, definition in constraints if "NOT NULL" in definition
            }
            await db.copy_records_to_table(
                "bulk_a", records=[(i, f"c{i}", None) for i in range(1, 1001)]
            )
            await db.copy_records_to_table("bulk_b", records=[("x", 1), ("x", 1)])
    assert await _indexes(db) == indexes
    assert await _constraints(db) == constraints
    # The constraints hold again: a duplicate key is refused.
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("INSERT INTO bulk_a (id, code) VALUES (1, 'other')")
    plan = await db.fetchval("EXPLAIN SELECT * FROM bulk_a WHERE id = 7")
    assert "Index" in plan


async def test_loading_that_fails_leaves_the_indexes_in_place(db: asyncpg.Connection) -> None:
    await db.execute(SCHEMA)
    indexes, constraints = await _indexes(db), await _constraints(db)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction():
            async with indexes_built_after(db, ["bulk_a"]):
                # Duplicates load without the index, and building it back refuses them.
                await db.copy_records_to_table("bulk_a", records=[(1, "a", None), (1, "b", None)])
    assert await _indexes(db) == indexes
    assert await _constraints(db) == constraints
    assert await db.fetchval("SELECT count(*) FROM bulk_a") == 0
