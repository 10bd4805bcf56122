"""Appending to the event store: one transaction for a whole group of requests.

The transaction first takes a lock per user stream, then reads what it needs (event ids
already stored, stream heads), decides in Python, and inserts. Advisory locks assign no
transaction id, so the xid taken by the insert is younger than that of every earlier
writer of the same streams: followers reading in (tx_id, position) order meet each
stream in version order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from command_side.new_events import NewEvent

LOCK_STREAMS_SQL = """
SELECT pg_advisory_xact_lock(k)
FROM (SELECT DISTINCT hashtextextended(u, 0) AS k FROM unnest($1::text[]) AS u ORDER BY 1) AS keys
"""

KNOWN_EVENTS_SQL = """
SELECT event_id, position, originator_version, body_hash
FROM interaction_events WHERE event_id = ANY($1::uuid[])
"""

STREAM_HEADS_SQL = """
SELECT u AS user_id,
       (SELECT max(originator_version) FROM interaction_events WHERE originator_id = u) AS head
FROM unnest($1::text[]) AS u
"""

INSERT_SQL = """
INSERT INTO interaction_events
    (event_id, originator_id, originator_version, event_type, topic, schema_version,
     payload, body_hash, occurred_at)
SELECT event_id, originator_id, originator_version, event_type, topic, schema_version,
       payload, body_hash, occurred_at
FROM unnest($1::uuid[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::integer[],
            $7::jsonb[], $8::bytea[], $9::timestamptz[])
     WITH ORDINALITY AS t(event_id, originator_id, originator_version, event_type, topic,
                          schema_version, payload, body_hash, occurred_at, n)
ORDER BY n
RETURNING position
"""


@dataclass(frozen=True, slots=True)
class Known:
    position: int
    stream_version: int
    body_hash: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    event_id: UUID
    position: int | None
    stream_version: int | None
    outcome: str  # accepted | duplicate | conflict | rejected


@dataclass(frozen=True, slots=True)
class Plan:
    """What to insert (with stream versions), and the answer for every input event."""

    inserts: list[tuple[NewEvent, int]]
    results: list[list[AppendResult]]


def plan_append(
    requests: Sequence[Sequence[NewEvent]], known: dict[UUID, Known], heads: dict[str, int]
) -> Plan:
    """Decide a group. Event ids must be unique across the group (the caller ensures it).

    A request with any event id stored before under a different body is refused whole
    (its other events come back "rejected"); repeats with the same body are duplicates.
    """
    heads = dict(heads)
    inserts: list[tuple[NewEvent, int]] = []
    results: list[list[AppendResult]] = []
    for events in requests:
        conflicted = any(
            e.event_id in known and known[e.event_id].body_hash != e.body_hash for e in events
        )
        answers: list[AppendResult] = []
        for event in events:
            seen = known.get(event.event_id)
            if seen is not None:
                outcome = "duplicate" if seen.body_hash == event.body_hash else "conflict"
                answers.append(
                    AppendResult(event.event_id, seen.position, seen.stream_version, outcome)
                )
            elif conflicted:
                answers.append(AppendResult(event.event_id, None, None, "rejected"))
            else:
                version = heads.get(event.user_id, 0) + 1
                heads[event.user_id] = version
                inserts.append((event, version))
                answers.append(AppendResult(event.event_id, None, version, "accepted"))
        results.append(answers)
    return Plan(inserts, results)


async def append_group(
    conn: asyncpg.Connection, requests: Sequence[Sequence[NewEvent]]
) -> list[list[AppendResult]]:
    """Append the requests' events in one transaction; answers come after the commit."""
    all_events = [e for events in requests for e in events]
    users = sorted({e.user_id for e in all_events})
    async with conn.transaction():
        await conn.execute(LOCK_STREAMS_SQL, users)
        known = {
            r["event_id"]: Known(r["position"], r["originator_version"], r["body_hash"])
            for r in await conn.fetch(KNOWN_EVENTS_SQL, [e.event_id for e in all_events])
        }
        heads = {r["user_id"]: r["head"] or 0 for r in await conn.fetch(STREAM_HEADS_SQL, users)}
        plan = plan_append(requests, known, heads)
        positions: list[int] = []
        if plan.inserts:
            rows = await conn.fetch(
                INSERT_SQL,
                [e.event_id for e, _ in plan.inserts],
                [e.user_id for e, _ in plan.inserts],
                [v for _, v in plan.inserts],
                [e.event_type for e, _ in plan.inserts],
                [e.topic for e, _ in plan.inserts],
                [e.schema_version for e, _ in plan.inserts],
                [e.state for e, _ in plan.inserts],
                [e.body_hash for e, _ in plan.inserts],
                [e.occurred_at for e, _ in plan.inserts],
            )
            positions = [r["position"] for r in rows]
    assigned = {e.event_id: p for (e, _), p in zip(plan.inserts, positions, strict=True)}
    return [
        [
            AppendResult(r.event_id, assigned[r.event_id], r.stream_version, r.outcome)
            if r.outcome == "accepted"
            else r
            for r in answers
        ]
        for answers in plan.results
    ]
