"""Reading events: the direct decoding builds exactly the event eventsourcing's mapper builds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from eventsourcing.utils import get_topic
from hypothesis import given, settings

from command_side.new_events import new_event
from schema import events
from schema.commands import ADAPTERS
from tests.test_new_events import WHEN, bodies, command_of

WATCHED = get_topic(events.Watched)


def same_event(direct: events.InteractionEvent, reference: events.InteractionEvent) -> None:
    """Same class, same attributes in the same order, each of the same type and value."""
    assert type(direct) is type(reference)
    assert list(vars(direct)) == list(vars(reference))
    for name, value in vars(reference).items():
        assert type(vars(direct)[name]) is type(value), name
        assert vars(direct)[name] == value, name
    assert direct == reference


@settings(max_examples=400, deadline=None, derandomize=True)
@given(bodies(), WHEN)
def test_direct_decoding_equals_the_mappers(
    kind_body: tuple[str, dict[str, Any]], when: Any
) -> None:
    stored = new_event(command_of(kind_body, when), datetime.now(UTC))
    state = stored.state.encode()
    args = (stored.user_id, 7, stored.topic, state)
    same_event(events.decode(*args), events.decode_by_mapper(*args))


def rows() -> list[tuple[str, bytes]]:
    stamp = {"_type_": "datetime_iso", "_data_": "2026-01-02T03:04:05.5+00:00"}
    common = {"timestamp": stamp, "context": None}
    watch = {"movie_id": "m1", "watched_seconds": 5, **common}
    return [
        # Version 1 of Watched: upcast by the mapper.
        (WATCHED, orjson.dumps({**watch, "progress_percent": 40})),
        # A context holding what looks like a transcoded value: revived by the mapper.
        (
            WATCHED,
            orjson.dumps(
                {**watch, "progress": 0.4, "class_version": 2, "context": {"when": stamp}}
            ),
        ),
        # A newer class version than the code knows: the mapper takes it as it is.
        (WATCHED, orjson.dumps({**watch, "progress": 0.4, "class_version": 3})),
        # Field order as written, whatever it is.
        (WATCHED, orjson.dumps({"class_version": 2, "progress": 0.4, **watch})),
    ]


@pytest.mark.parametrize("topic_state", rows())
def test_rows_the_direct_path_declines_decode_as_the_mapper_does(
    topic_state: tuple[str, bytes],
) -> None:
    topic, state = topic_state
    same_event(events.decode("u1", 3, topic, state), events.decode_by_mapper("u1", 3, topic, state))


@pytest.mark.parametrize(
    "state",
    [
        b"{not json",
        b'[{"_type_": "datetime_iso", "_data_": "2026-01-02"}]',
        b'{"movie_id": "m1", "timestamp": {"_type_": "datetime_iso", "_data_": "noon"}}',
        b'{"movie_id": "m1", "timestamp": {"_type_": "datetime_iso", "_data_": 12}}',
    ],
)
def test_unreadable_rows_fail_as_with_the_mapper(state: bytes) -> None:
    def failure(decode: Any) -> type[BaseException]:
        with pytest.raises(Exception) as raised:
            decode("u1", 1, WATCHED, state)
        return raised.type

    assert failure(events.decode) is failure(events.decode_by_mapper)


def test_rows_the_service_writes_are_read_without_the_mapper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The direct path is the one taken (else the equality above would prove nothing)."""
    command = ADAPTERS["watch"].validate_json(
        b'{"user_id": "u1", "movie_id": "m1", "progress": 0.5, "context": {"app": "tv"}}'
    )
    stored = new_event(command, datetime.now(UTC))
    reference = events.decode_by_mapper("u1", 2, stored.topic, stored.state.encode())

    def refuse(*_: object) -> None:
        raise AssertionError("the mapper was asked")

    monkeypatch.setattr(events.MAPPER, "to_domain_event", refuse)
    same_event(events.decode("u1", 2, stored.topic, stored.state.encode()), reference)
