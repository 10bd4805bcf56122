"""Columns joined into one text and split by PostgreSQL hold exactly what arrays held."""

from __future__ import annotations

import random
import struct

import asyncpg
import orjson
import pytest

from event_store import columns


def test_texts_joins_values_and_refuses_what_the_split_would_change() -> None:
    assert columns.texts(["u1", "m:2", "x.y-z"]) == "u1\x1fm:2\x1fx.y-z"
    assert columns.texts([]) == ""
    for bad in (["a\x1fb"], ["a", ""], [""], ["\x1f"]):
        with pytest.raises(ValueError, match="separator"):
            columns.texts(bad)


def test_numbers_are_written_so_they_read_back_the_same() -> None:
    assert columns.numbers([1, -2, 2**62]) == "1\x1f-2\x1f4611686018427387904"
    values = [0.1, 1 / 3, 5e-324, -0.0, 1.7976931348623157e308]
    assert [float(x) for x in columns.numbers(values).split("\x1f")] == values


def _random_text(rng: random.Random) -> str:
    # Any character PostgreSQL's text can hold (no NUL, no surrogates) but the separator.
    alphabet = [c for c in range(1, 0x3000) if c != 31 and not 0xD800 <= c < 0xE000]
    return "".join(chr(rng.choice(alphabet)) for _ in range(rng.randint(1, 40)))


def _random_double(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if value == value:  # not NaN
            return value


async def test_each_split_column_equals_its_array(db: asyncpg.Connection) -> None:
    rng = random.Random(20261203)
    texts = [_random_text(rng) for _ in range(500)] + ["NULL", "{}", '"q"', "a,b", "\\"]
    documents = [
        orjson.dumps({"v": t, "n": rng.random(), "s": "\x1f\n\t", "l": [1, None, t]}).decode()
        for t in texts
    ]
    integers = [rng.randint(-(2**31), 2**31 - 1) for _ in range(500)] + [-(2**31), 2**31 - 1]
    bigints = [rng.randint(-(2**63), 2**63 - 1) for _ in range(500)] + [-(2**63), 2**63 - 1]
    doubles = [_random_double(rng) for _ in range(2000)]
    doubles += [0.0, -0.0, 5e-324, float("inf"), float("-inf"), 0.1, 1 / 3]
    cases: list[tuple[str, list[str] | list[int] | list[float], str]] = [
        ("text", texts, columns.texts(texts)),
        ("json", documents, columns.texts(documents)),
        ("jsonb", documents, columns.texts(documents)),
        ("integer", integers, columns.numbers(integers)),
        ("bigint", bigints, columns.numbers(bigints)),
        ("float8", doubles, columns.numbers(doubles)),
    ]
    for sql_type, values, joined in cases:
        via_array = await db.fetchval(f"SELECT $1::{sql_type}[]::text", values)
        via_split = await db.fetchval(
            f"SELECT string_to_array($1, chr(31))::{sql_type}[]::text", joined
        )
        assert via_split == via_array, sql_type
        assert await db.fetchval(
            f"SELECT cardinality(string_to_array($1, chr(31))::{sql_type}[])", joined
        ) == len(values)
    assert await db.fetchval("SELECT cardinality(string_to_array($1, chr(31)))", "") == 0
