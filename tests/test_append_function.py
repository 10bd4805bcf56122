"""The store's append function: versions, duplicates and conflicts, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg

from command_side.new_events import NewEvent
from event_store.append import append_group
from event_store.feed import Checkpoint, held_in_store, read_after
from event_store.streams import erase_stream


def event(user: str, body: bytes = b"a", event_id: UUID | None = None) -> NewEvent:
    return NewEvent(
        event_id or uuid4(),
        user,
        "watch",
        "schema.events:Watched",
        2,
        "{}",
        body,
        datetime.now(UTC),
    )


async def test_versions_continue_each_stream_in_request_order(db: asyncpg.Connection) -> None:
    await append_group(db, [[event("a") for _ in range(7)]])
    a1, b1, a2 = event("a"), event("b"), event("a")
    answers = await append_group(db, [[a1, b1], [a2]])
    assert [[(r.outcome, r.stream_version) for r in request] for request in answers] == [
        [("accepted", 8), ("accepted", 1)],
        [("accepted", 9)],
    ]
    positions = [r.position for request in answers for r in request]
    assert None not in positions
    assert positions == sorted(p for p in positions if p is not None)


async def test_known_event_with_same_body_is_a_duplicate_with_its_original_place(
    db: asyncpg.Connection,
) -> None:
    first = event("a", b"same")
    [[original]] = await append_group(db, [[first]])
    [[again]] = await append_group(db, [[event("a", b"same", first.event_id)]])
    assert (again.outcome, again.position, again.stream_version) == (
        "duplicate",
        original.position,
        original.stream_version,
    )


async def test_conflict_rejects_the_whole_request_but_not_others(db: asyncpg.Connection) -> None:
    used = event("a", b"old body")
    await append_group(db, [[used]])
    clash = event("a", b"new body", used.event_id)
    neighbour, other_request = event("a"), event("a")
    answers = await append_group(db, [[neighbour, clash], [other_request]])
    assert [r.outcome for r in answers[0]] == ["rejected", "conflict"]
    assert (answers[1][0].outcome, answers[1][0].stream_version) == ("accepted", 2)
    assert await db.fetchval("SELECT count(*) FROM interaction_events") == 2


async def test_only_records_the_store_holds_as_they_are_count_as_held(
    db: asyncpg.Connection,
) -> None:
    """What a Kafka consumer applies: a message whose event the store no longer holds
    (a forgotten user), or holds otherwise (another id, stream or version at that
    position), is not the store's event."""
    await append_group(db, [[event("a"), event("a"), event("b")]])
    stored = await read_after(db, Checkpoint(), 10)
    first, second, other = stored
    candidates = [
        first,
        second._replace(event_id=uuid4()),
        other._replace(user_id="a"),
        first._replace(stream_version=first.stream_version + 5),
        other._replace(position=other.position + 1000),
    ]
    assert await held_in_store(db, candidates) == {first.event_id}
    assert await held_in_store(db, stored) == {r.event_id for r in stored}
    async with db.transaction():
        await erase_stream(db, "a")
    assert await held_in_store(db, stored) == {other.event_id}
