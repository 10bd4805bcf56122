"""The ingest path's direct encoding writes exactly what eventsourcing's mapper writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from command_side.new_events import encoded_by_mapper, new_event, new_events
from schema import events
from schema.commands import ADAPTERS, Command

IDS = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))
CONTEXT = st.none() | st.dictionaries(
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8),
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    max_size=4,
)
WHEN = st.none() | st.builds(
    lambda minutes, offset: (
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    ).astimezone(timezone(timedelta(minutes=offset))),
    st.integers(0, 400_000),
    st.integers(-720, 720),
)


def bodies() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    common: dict[str, st.SearchStrategy[Any]] = {"user_id": IDS, "context": CONTEXT}
    kinds: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "watch": {
            "movie_id": IDS,
            "progress": st.floats(0, 1),
            "watched_seconds": st.none() | st.integers(0, 10**7),
        },
        "search": {
            # No lone surrogates: a JSON body cannot carry them (orjson refuses to write one).
            "query": st.text(
                st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
                min_size=1,
                max_size=40,
            ),
            "results": st.none() | st.lists(IDS, max_size=5),
            "clicked_movie_id": st.none() | IDS,
        },
        "rating": {"movie_id": IDS, "rating": st.integers(1, 10).map(lambda r: r / 2)},
        "favorite": {"movie_id": IDS, "action": st.sampled_from(["add", "remove"])},
        "feedback": {
            "movie_id": IDS,
            "recommendation_id": IDS,
            "action": st.sampled_from(["click", "watch", "like", "dislike", "dismiss"]),
            "rank": st.none() | st.integers(1, 1000),
        },
    }
    return st.one_of(
        *(
            st.tuples(st.just(kind), st.fixed_dictionaries({**common, **fields}))
            for kind, fields in kinds.items()
        )
    )


def command_of(kind_body: tuple[str, dict[str, Any]], when: Any) -> Command:
    """A generated body (and occurred_at, when drawn) validated as the API validates it."""
    kind, body = kind_body
    if when is not None:
        body = {**body, "occurred_at": when.isoformat()}
    return ADAPTERS[kind].validate_json(
        orjson.dumps({k: v for k, v in body.items() if v is not None})
    )


@settings(max_examples=400, deadline=None, derandomize=True)
@given(bodies(), WHEN)
def test_direct_encoding_equals_the_mappers(
    kind_body: tuple[str, dict[str, Any]], when: Any
) -> None:
    command = command_of(kind_body, when)
    now = datetime.now(UTC)
    direct = new_event(command, now)
    reference = encoded_by_mapper(command, now)
    # Same row, byte for byte, but the id (random when the client gave none).
    assert direct.state == reference.state
    assert (direct.topic, direct.schema_version, direct.event_type) == (
        reference.topic,
        reference.schema_version,
        reference.event_type,
    )
    assert (direct.user_id, direct.body_hash, direct.occurred_at) == (
        reference.user_id,
        reference.body_hash,
        reference.occurred_at,
    )
    # And the mapper reads it back as the event it would have written.
    decoded = events.decode(direct.user_id, 1, direct.topic, direct.state.encode())
    assert events.payload_of(decoded)["context"] == command.context


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.tuples(bodies(), WHEN), min_size=1, max_size=6))
def test_a_batch_encodes_each_event_as_the_mapper_would_at_its_arrival(
    drawn: list[tuple[tuple[str, dict[str, Any]], Any]],
) -> None:
    commands = [command_of(kind_body, when) for kind_body, when in drawn]
    now = datetime.now(UTC)
    # One arrival time (encoded once) for the events that carry none; each event's own
    # time for the others.
    for direct, command in zip(new_events(commands, now), commands, strict=True):
        reference = encoded_by_mapper(command, now)
        assert (direct.state, direct.occurred_at, direct.body_hash) == (
            reference.state,
            reference.occurred_at,
            reference.body_hash,
        )
