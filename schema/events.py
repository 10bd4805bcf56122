"""The interaction events: one stream per user, encoded by eventsourcing's mapper.

Each class is an immutable `eventsourcing` domain event. `originator_id` is the user id
and `originator_version` the event's place in that user's stream; the store assigns the
version at commit, so events are built with version 0 and get theirs back when read.
`class_version` plus `upcast_vN_vN+1` keep old rows readable after a payload changes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from eventsourcing.domain import CanCreateTimestamp, HasOriginatorIDVersion, MetaDomainEvent
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import get_topic


@dataclass(frozen=True)
class InteractionEvent(HasOriginatorIDVersion[str], CanCreateTimestamp, metaclass=MetaDomainEvent):
    """Something a viewer did. `timestamp` is when it happened on the client (occurred_at)."""

    event_type: ClassVar[str]
    originator_id: str
    originator_version: int
    timestamp: datetime
    context: dict[str, Any] | None


@dataclass(frozen=True)
class Watched(InteractionEvent):
    """Version 2 holds `progress` as a fraction; version 1 held `progress_percent` 0..100."""

    event_type = "watch"
    class_version = 2
    movie_id: str
    progress: float
    watched_seconds: int | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["progress"] = state.pop("progress_percent") / 100.0
        state.setdefault("watched_seconds", None)


@dataclass(frozen=True)
class Searched(InteractionEvent):
    event_type = "search"
    query: str
    results: list[str]
    clicked_movie_id: str | None


@dataclass(frozen=True)
class Rated(InteractionEvent):
    event_type = "rating"
    movie_id: str
    rating: float


@dataclass(frozen=True)
class Favorited(InteractionEvent):
    event_type = "favorite"
    movie_id: str
    action: str


@dataclass(frozen=True)
class FeedbackGiven(InteractionEvent):
    event_type = "feedback"
    movie_id: str
    recommendation_id: str
    action: str
    rank: int | None


EVENT_CLASSES: dict[str, type[InteractionEvent]] = {
    cls.event_type: cls for cls in (Watched, Searched, Rated, Favorited, FeedbackGiven)
}

_ENVELOPE_FIELDS = frozenset({"originator_id", "originator_version", "timestamp"})
_FIELDS = {kind: frozenset(f.name for f in fields(cls)) for kind, cls in EVENT_CLASSES.items()}


class OrjsonTranscoder(JSONTranscoder):
    """eventsourcing's JSON transcoder with orjson underneath: same format, several times faster.

    Registered transcodings (datetimes here) are written as {"_type_", "_data_"} objects
    exactly as the standard transcoder writes them, so either can read the other's rows.
    """

    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=self._encode_obj, option=self._OPTIONS)

    def decode(self, data: bytes) -> Any:
        decoded = orjson.loads(data)
        return self._revive(decoded) if b'"_type_"' in data else decoded

    def _revive(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 2 and "_type_" in value:
                return self._decode_obj(value)
            for key, item in value.items():
                if isinstance(item, dict | list):
                    value[key] = self._revive(item)
        elif isinstance(value, list):
            return [self._revive(item) for item in value]
        return value


def new_mapper() -> Mapper[str]:
    transcoder = OrjsonTranscoder()
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)


MAPPER = new_mapper()


def schema_version(event: InteractionEvent) -> int:
    return schema_version_of(type(event))


def schema_version_of(cls: type[InteractionEvent]) -> int:
    return int(getattr(cls, "class_version", 1))


def payload_fields(event_type: str) -> frozenset[str]:
    """The fields of an event of this type that its payload carries (all but the
    stream envelope's)."""
    return _FIELDS[event_type] - _ENVELOPE_FIELDS


def timestamp_state(at: datetime) -> dict[str, str]:
    """An event's time as eventsourcing's DatetimeAsISO transcoding writes it in a stored
    row. orjson writes a UTC time as isoformat does, in a fifth of its time (the ingest
    and the Kafka consumer write one per event; tests hold their rows identical to the
    mapper's)."""
    data = orjson.dumps(at)[1:-1].decode() if at.tzinfo is UTC else at.isoformat()
    return {"_type_": "datetime_iso", "_data_": data}


def revived(
    cls: type[InteractionEvent], fields_: dict[str, Any], user_id: str, version: int
) -> InteractionEvent:
    """An event of `cls` with these fields (its payload's and its timestamp) as the
    `version`-th of `user_id`'s stream, built as the mapper builds one: `fields_` becomes
    its `__dict__`, no `__init__` runs."""
    fields_["originator_id"] = user_id
    fields_["originator_version"] = version
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", fields_)
    return event


def encode(event: InteractionEvent) -> StoredEvent:
    return MAPPER.to_stored_event(event)


def decode_by_mapper(user_id: str, version: int, topic: str, state: bytes) -> InteractionEvent:
    """The reference decoding: eventsourcing's mapper, upcasting old schema versions."""
    stored = StoredEvent(
        originator_id=user_id, originator_version=version, topic=topic, state=state
    )
    event = MAPPER.to_domain_event(stored)
    assert isinstance(event, InteractionEvent)
    return event


# Topics of the current classes, with their class versions: the rows `decode` reads
# directly (a renamed or registered topic goes to the mapper).
_CURRENT = {
    get_topic(cls): (cls, int(getattr(cls, "class_version", 1))) for cls in EVENT_CLASSES.values()
}
_TRANSCODED = b'"_type_"'
_TOPICS = {kind: get_topic(cls) for kind, cls in EVENT_CLASSES.items()}


def decode(user_id: str, version: int, topic: str, state: bytes) -> InteractionEvent:
    """Rebuild a stored event, upcasting old schema versions on the way.

    A row of a current class at its class version whose only transcoded value is the
    timestamp (what the service writes) is built here as the mapper builds it (its state
    parsed, the timestamp revived, the stream's id and version set, the class version
    dropped), without the mapper's generic walk over every value: replays decode every
    event in the store. Any other row (older versions to upcast, other transcoded
    values) goes through the mapper; a test holds the two identical."""
    found = _CURRENT.get(topic)
    if found is None or state.count(_TRANSCODED) != 1:
        return decode_by_mapper(user_id, version, topic, state)
    cls, class_version = found
    try:
        fields_ = orjson.loads(state)
        stamp = fields_["timestamp"]
        if (
            type(stamp) is not dict
            or len(stamp) != 2
            or stamp.get("_type_") != "datetime_iso"
            or type(stamp.get("_data_")) is not str
            or fields_.get("class_version", 1) != class_version
        ):
            return decode_by_mapper(user_id, version, topic, state)
        fields_["timestamp"] = datetime.fromisoformat(stamp["_data_"])
    except (ValueError, TypeError, KeyError):  # unreadable: the mapper says why
        return decode_by_mapper(user_id, version, topic, state)
    fields_.pop("class_version", None)
    return revived(cls, fields_, user_id, version)


def payload_of(event: InteractionEvent) -> dict[str, Any]:
    """The event's own fields, as clients sent them (without the stream envelope)."""
    return {k: v for k, v in vars(event).items() if k not in _ENVELOPE_FIELDS}


class UnreadableEvent(ValueError):
    """A message claims to be an interaction event but is not one this service can read."""


def stored_from_payload(
    event_type: str,
    schema_version: int,
    user_id: str,
    version: int,
    occurred_at: datetime,
    payload: dict[str, Any],
) -> tuple[StoredEvent, InteractionEvent]:
    """The stored form of an event that travelled as a payload (a Kafka envelope), and
    the event decoded from it (the check): older schema versions are upcast on the way,
    as stored rows are."""
    cls = EVENT_CLASSES.get(event_type)
    if cls is None:
        raise UnreadableEvent(f"unknown event type {event_type!r}")
    if not 1 <= schema_version <= int(getattr(cls, "class_version", 1)):
        raise UnreadableEvent(f"{event_type} has no schema version {schema_version}")
    state = {**payload, "timestamp": occurred_at}
    if schema_version > 1:
        state["class_version"] = schema_version
    stored = StoredEvent(
        originator_id=user_id,
        originator_version=version,
        topic=_TOPICS[event_type],
        state=MAPPER.transcoder.encode(state),
    )
    try:
        event = decode(user_id, version, stored.topic, stored.state)
    except Exception as exc:  # an upcaster meeting a payload it does not know
        raise UnreadableEvent(f"{event_type} v{schema_version}: {exc!r}") from exc
    expected = _FIELDS[event_type]
    if vars(event).keys() != expected:
        missing, extra = expected - set(vars(event)), set(vars(event)) - expected
        raise UnreadableEvent(
            f"{event_type} payload: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    assert isinstance(event, InteractionEvent)
    return stored, event
