"""Columns of values sent to PostgreSQL as one text each, split there by `string_to_array`.

asyncpg encodes an array parameter element by element, and checks each element against
`collections.abc.Iterable` and `Sized` (looking for nested arrays) through Python-level
ABC calls: 10% of the projection worker's time under load (py-spy, native frames). The
client's CPU per element, timed over 1,000-element columns: text 1.1 us, JSON documents
1.9, integers 0.5-0.6; the same column joined here costs 0.06-0.2 us per element.
PostgreSQL's split costs it a little more than decoding the array did (paired runs of
single POSTs: worker 240 -> 229 us an event, PostgreSQL 250 -> 259, the stack 834 -> 828,
throughput 4.5-7.6% higher in three pairs). The statements whose columns grow with a
batch's events (the append, the projections' reads and writes) send their text and
number columns this way.

Left as arrays: uuid columns (as text, 0.59 us of the client's CPU per id against 0.86,
but 2.7 us of wall time against 1.8: PostgreSQL parses it), bytea (not tried),
timestamps (ISO text costs more to make than the array's 2.9 us, and seconds as a float
do not carry microseconds exactly) and columns that hold NULLs.

The separator is the ASCII unit separator, chr(31): identifiers cannot hold it
(schema.commands) and JSON writes it as an escape. A value holding it, or an empty one
(which the split would drop), is refused rather than sent wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

SEPARATOR = "\x1f"


def texts(values: Sequence[str]) -> str:
    """`values` as one text, for `string_to_array($n, chr(31))` (a cast after it for
    json, jsonb)."""
    joined = SEPARATOR.join(values)
    if joined.count(SEPARATOR) != max(len(values) - 1, 0) or not all(values):
        raise ValueError("a value is empty or holds the column separator (chr(31))")
    return joined


def numbers(values: Sequence[int | float]) -> str:
    """Integers or floats as one text, for `string_to_array($n, chr(31))::integer[]`
    (bigint, float8). A float's shortest repr reads back as the same double."""
    return SEPARATOR.join(map(str, values))
