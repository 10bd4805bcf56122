"""The interaction_events message format and the applied-stream marks: pure, no broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from command_side.new_events import new_event
from event_store.feed import StoredRecord
from projections import kafka_feed
from projections.applier import not_applied
from projections.kafka_feed import PoisonMessage, from_message, read_message, to_message
from schema import events
from tests.test_event_decoding import same_event
from tests.test_new_events import WHEN, bodies, command_of

AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def stored(event: events.InteractionEvent, version: int = 3, position: int = 42) -> StoredRecord:
    encoded = events.encode(event)
    return StoredRecord(
        position=position,
        tx_id=777,
        event_id=uuid.uuid4(),
        user_id=event.originator_id,
        stream_version=version,
        event_type=event.event_type,
        topic=encoded.topic,
        schema_version=events.schema_version(event),
        state=encoded.state,
        recorded_at=AT,
    )


def watched(user: str = "u1") -> events.Watched:
    return events.Watched(
        originator_id=user,
        originator_version=0,
        timestamp=AT,
        context={"device": "tv"},
        movie_id="m1",
        progress=0.75,
        watched_seconds=3600,
    )


def test_a_message_carries_the_record_there_and_back() -> None:
    record = stored(watched())
    value, headers = to_message(record)
    back = from_message(value, headers)
    assert back.event_id == record.event_id and back.checkpoint == record.checkpoint
    assert (back.user_id, back.stream_version) == ("u1", 3)
    event = back.decode()
    assert isinstance(event, events.Watched)
    assert (event.progress, event.watched_seconds, event.context) == (0.75, 3600, {"device": "tv"})
    assert event.timestamp == AT


def test_message_times_are_written_as_the_api_writes_them() -> None:
    """One format for times everywhere: RFC 3339 with `Z`, as the HTTP answers have."""
    record = stored(watched())
    envelope = orjson.loads(to_message(record)[0])
    assert envelope["occurred_at"] == envelope["recorded_at"] == "2026-11-26T10:00:00Z"
    assert from_message(*to_message(record)).recorded_at == AT


def test_an_older_schema_version_is_upcast_on_the_way_in() -> None:
    record = stored(watched())
    value, headers = to_message(record)
    envelope = orjson.loads(value)
    envelope["schema_version"] = 1
    envelope["payload"] = {"movie_id": "m1", "progress_percent": 40, "context": None}
    event = from_message(orjson.dumps(envelope), headers).decode()
    assert isinstance(event, events.Watched)
    assert (event.progress, event.watched_seconds) == (0.4, None)


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.update(type="teleport"),
        lambda e: e.update(schema_version=9),
        lambda e: e["payload"].pop("movie_id"),
        lambda e: e["payload"].update(extra=1),
        lambda e: e.update(occurred_at="yesterday"),
        lambda e: e.update(payload=[1, 2]),
        lambda e: e.pop("event_id"),
    ],
)
def test_what_is_not_an_event_is_poison(change: object) -> None:
    value, headers = to_message(stored(watched()))
    envelope = orjson.loads(value)
    change(envelope)  # type: ignore[operator]
    with pytest.raises(PoisonMessage):
        from_message(orjson.dumps(envelope), headers)


def test_bytes_without_an_envelope_or_store_place_are_poison() -> None:
    value, headers = to_message(stored(watched()))
    for bad_value, bad_headers in [
        (b"\x00", headers),
        (b"[]", headers),
        (None, headers),
        (value, [h for h in headers if h[0] != "tx_id"]),
    ]:
        with pytest.raises(PoisonMessage):
            from_message(bad_value, bad_headers)


def test_marks_let_through_each_stream_event_once() -> None:
    base = stored(watched("a"), version=1)
    records = [
        base._replace(user_id=user, stream_version=version, event_id=uuid.uuid4())
        for user, version in [("a", 1), ("a", 2), ("b", 5), ("a", 2), ("b", 6), ("a", 3)]
    ]
    fresh = not_applied(records, {"a": 1, "b": 4})
    assert [(r.user_id, r.stream_version) for r in fresh] == [
        ("a", 2),
        ("b", 5),
        ("b", 6),
        ("a", 3),
    ]


# How a message may differ from what the relay writes: each is read the reference way
# (or refused) exactly as the direct reading does.
CHANGES: list[Any] = [
    lambda e: None,
    lambda e: e.update(schema_version=1),
    lambda e: e.update(schema_version="2"),
    lambda e: e.update(position="42"),
    lambda e: e.update(stream_version=True),
    lambda e: e.update(user_id=7),
    lambda e: e["payload"].update(extra=1),
    lambda e: e["payload"].update(timestamp="2026-01-01T00:00:00Z"),
    lambda e: e["payload"].update(context={"at": {"_type_": "datetime_iso", "_data_": "x"}}),
    lambda e: e.update(occurred_at="2026-01-02T03:04:05.123456+02:00"),
    lambda e: e.update(occurred_at="2026-01-02T03:04:05"),
    lambda e: e.update(occurred_at=5),
    lambda e: e.update(event_id="nope"),
    lambda e: e.pop("recorded_at"),
]


def read_both(value: bytes, headers: Any) -> tuple[Any, Any]:
    def read(how: Any) -> Any:
        try:
            return how(value, headers)
        except PoisonMessage:
            return PoisonMessage

    return read(from_message), read(read_message)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(bodies(), WHEN, st.sampled_from(range(len(CHANGES))))
def test_direct_reading_equals_the_reference(
    kind_body: tuple[str, dict[str, Any]], when: Any, change: int
) -> None:
    new = new_event(command_of(kind_body, when), datetime.now(UTC))
    event = events.decode(new.user_id, 7, new.topic, new.state.encode())
    value, headers = to_message(stored(event, version=7))
    envelope = orjson.loads(value)
    CHANGES[change](envelope)
    direct, reference = read_both(orjson.dumps(envelope), headers)
    if reference is PoisonMessage:
        assert direct is PoisonMessage
        return
    assert direct == reference  # every field of the record, its stored row's bytes too
    assert direct.decoded is not None and reference.decoded is not None
    same_event(direct.decoded, reference.decoded)


def test_what_the_relay_writes_is_read_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct path is the one taken (else the equality above would prove nothing)."""
    value, headers = to_message(stored(watched()))
    reference = read_message(value, headers)

    def refuse(*_: object) -> None:
        raise AssertionError("the reference path was taken")

    monkeypatch.setattr(kafka_feed, "read_message", refuse)
    assert from_message(value, headers) == reference
