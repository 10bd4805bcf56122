"""Command validation and event encoding: pure functions, no servers."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import orjson
import pytest
from pydantic import ValidationError

from command_side.http import BadRequest, parse
from command_side.new_events import new_event
from schema import events
from schema.commands import ADAPTERS, RatingCommand, WatchCommand


def validate(kind: str, body: object) -> object:
    return ADAPTERS[kind].validate_json(orjson.dumps(body))


@pytest.mark.parametrize("rating", [0.5, 1, 3.5, 5.0])
def test_ratings_in_half_steps_are_accepted(rating: float) -> None:
    command = validate("rating", {"user_id": "u1", "movie_id": "m1", "rating": rating})
    assert isinstance(command, RatingCommand)
    assert command.rating == rating


@pytest.mark.parametrize("rating", [0, 0.25, 3.3, 5.5, -1, "4", True])
def test_ratings_off_the_scale_are_refused(rating: object) -> None:
    with pytest.raises(ValidationError):
        validate("rating", {"user_id": "u1", "movie_id": "m1", "rating": rating})


@pytest.mark.parametrize("user_id", ["", "a" * 65, "has space", "émile", "a/b", 42, None])
def test_identifiers_are_1_to_64_safe_characters(user_id: object) -> None:
    with pytest.raises(ValidationError):
        validate("watch", {"user_id": user_id, "movie_id": "m1", "progress": 0.5})


def test_identifier_alphabet_is_accepted_in_full() -> None:
    user_id = "Az09_.:-" + "x" * 56
    assert len(user_id) == 64
    command = validate("watch", {"user_id": user_id, "movie_id": "m1", "progress": 1})
    assert isinstance(command, WatchCommand)


@pytest.mark.parametrize(
    "body",
    [
        {"progress": 1.01},
        {"progress": -0.1},
        {"progress": 0.5, "watched_seconds": -1},
        {"progress": 0.5, "watched_seconds": 1.5},
        {"progress": 0.5, "unknown": 1},
        {"progress": 0.5, "occurred_at": "2026-11-26T10:00:00"},  # no time zone
        {"progress": 0.5, "occurred_at": "yesterday"},
        {"progress": 0.5, "event_id": "not-a-uuid"},
        {"progress": 0.5, "context": {"blob": "x" * 2100}},
        {"progress": 0.5, "context": "not an object"},
    ],
)
def test_watch_refusals(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        validate("watch", {"user_id": "u1", "movie_id": "m1", **body})


def test_occurred_at_at_most_five_minutes_ahead() -> None:
    now = datetime.now(UTC)
    ok = (now + timedelta(minutes=4)).isoformat()
    late = (now + timedelta(minutes=6)).isoformat()
    validate("watch", {"user_id": "u", "movie_id": "m", "progress": 0.1, "occurred_at": ok})
    with pytest.raises(ValidationError, match="5 minutes"):
        validate("watch", {"user_id": "u", "movie_id": "m", "progress": 0.1, "occurred_at": late})


def test_search_limits() -> None:
    base = {"user_id": "u1", "query": "star wars"}
    validate("search", {**base, "results": [f"m{i}" for i in range(100)], "clicked_movie_id": "m1"})
    for bad in ({"query": ""}, {"query": "q" * 257}, {"results": [f"m{i}" for i in range(101)]}):
        with pytest.raises(ValidationError):
            validate("search", {**base, **bad})


def test_batch_error_location_names_the_item_and_field() -> None:
    body = {
        "events": [
            {"type": "watch", "user_id": "u1", "movie_id": "m1", "progress": 0.5},
            {"type": "rating", "user_id": "u1", "movie_id": "m1", "rating": 9},
        ]
    }
    with pytest.raises(BadRequest) as refused:
        parse(ADAPTERS["batch"], orjson.dumps(body))
    assert refused.value.status_code == 422
    assert refused.value.detail[0]["loc"] == ["body", "events", 1, "rating"]


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_holds_1_to_1000_events(size: int) -> None:
    item = {"type": "search", "user_id": "u1", "query": "q"}
    with pytest.raises(ValidationError):
        validate("batch", {"events": [item] * size})


def test_malformed_json_is_a_400() -> None:
    with pytest.raises(BadRequest) as refused:
        parse(ADAPTERS["watch"], b'{"user_id": ')
    assert refused.value.status_code == 400


def test_fingerprint_ignores_event_id_and_time_spelling() -> None:
    a = validate(
        "rating",
        {
            "user_id": "u",
            "movie_id": "m",
            "rating": 4,
            "event_id": str(uuid4()),
            "occurred_at": "2026-01-01T00:00:00Z",
        },
    )
    b = validate(
        "rating",
        {
            "user_id": "u",
            "movie_id": "m",
            "rating": 4.0,
            "occurred_at": "2026-01-01T00:00:00+00:00",
        },
    )
    c = validate(
        "rating",
        {"user_id": "u", "movie_id": "m", "rating": 4.5, "occurred_at": "2026-01-01T00:00:00Z"},
    )
    assert isinstance(a, RatingCommand) and isinstance(b, RatingCommand)
    assert isinstance(c, RatingCommand)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_new_event_round_trips_through_the_mapper() -> None:
    command = validate(
        "watch",
        {
            "user_id": "u7",
            "movie_id": "m3",
            "progress": 0.75,
            "watched_seconds": 3000,
            "context": {"device": "tv"},
        },
    )
    assert isinstance(command, WatchCommand)
    row = new_event(command)
    decoded = events.decode(row.user_id, 4, row.topic, row.state.encode())
    assert isinstance(decoded, events.Watched)
    assert decoded.originator_version == 4
    assert events.payload_of(decoded) == {
        "movie_id": "m3",
        "progress": 0.75,
        "watched_seconds": 3000,
        "context": {"device": "tv"},
    }
    assert row.schema_version == 2


def test_version_1_watch_events_are_upcast() -> None:
    state = orjson.dumps(
        {
            "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"},
            "movie_id": "m1",
            "progress_percent": 40,
            "context": None,
        }
    )
    decoded = events.decode("u1", 1, "schema.events:Watched", state)
    assert isinstance(decoded, events.Watched)
    assert decoded.progress == pytest.approx(0.4)
    assert decoded.watched_seconds is None


def test_generated_event_ids_are_distinct_time_ordered_version_7_uuids() -> None:
    from event_store.append import time_ordered_id

    before = time.time_ns() // 1_000_000
    ids = [time_ordered_id() for _ in range(2000)]  # across several 4 KiB refills
    time.sleep(0.002)
    later = time_ordered_id()
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    # The first 48 bits are the time of issue in milliseconds: later ids sort after.
    assert all(before <= i.int >> 80 <= after for i in [*ids, later])
    assert later > max(ids)
    # Built in C by asyncpg, they are uuid.UUIDs in every way the service uses them.
    assert all(isinstance(i, uuid.UUID) and uuid.UUID(str(i)) == i for i in ids)
    assert {uuid.UUID(bytes=i.bytes) for i in ids} == set(ids)


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        (
            "watch",
            {"user_id": "u1", "movie_id": "m1", "progress": 0.5, "watched_seconds": 3.0},
            "watched_seconds",
        ),
        (
            "feedback",
            {
                "user_id": "u1",
                "movie_id": "m1",
                "recommendation_id": "r",
                "action": "click",
                "rank": 3.0,
            },
            "rank",
        ),
        ("movie", {"title": "Heat", "year": 1995.0}, "year"),
    ],
)
def test_integer_fields_take_integral_floats(
    kind: str, body: dict[str, object], field: str
) -> None:
    """3.0 is an integer in JSON Schema 2020-12 (OpenAPI 3.1); 3.5, true and "3" are not."""
    command = validate(kind, body)
    value = getattr(command, field)
    assert value == int(body[field]) and type(value) is int  # type: ignore[call-overload]
    for wrong in (3.5, True, "3", 1e300):
        with pytest.raises(ValidationError):
            validate(kind, {**body, field: wrong})


def test_a_fingerprint_is_the_same_for_3_and_3_0() -> None:
    """A retry that writes 3.0 where it wrote 3 is the same event, not a conflict."""
    body = {"user_id": "u1", "movie_id": "m1", "progress": 0.5, "watched_seconds": 3}
    first = validate("watch", body)
    again = validate("watch", {**body, "watched_seconds": 3.0})
    assert first.fingerprint() == again.fingerprint()  # type: ignore[attr-defined]


def test_an_event_fingerprints_alike_alone_and_in_a_batch() -> None:
    """Batch items are their own classes (their `type` is required) with the same fields."""
    body: dict[str, Any] = {
        "type": "feedback",
        "user_id": "u1",
        "movie_id": "m1",
        "recommendation_id": "r",
    }
    body |= {"action": "like", "rank": 2, "context": {"app": "tv"}}
    alone = validate("feedback", body)
    batched = ADAPTERS["batch"].validate_json(orjson.dumps({"events": [body]})).events[0]
    assert type(batched) is not type(alone)
    assert batched.fingerprint() == alone.fingerprint()  # type: ignore[attr-defined]
    assert new_event(batched).event_type == new_event(alone).event_type  # type: ignore[arg-type]
    untyped = {k: v for k, v in body.items() if k != "type"}
    with pytest.raises(ValidationError, match="discriminator"):
        ADAPTERS["batch"].validate_json(orjson.dumps({"events": [untyped]}))
