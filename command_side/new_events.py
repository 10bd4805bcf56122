"""Turn a validated command into the domain event to append, encoded for the store."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from schema import events
from schema.commands import Command

_ENVELOPE = {"originator_id", "originator_version", "timestamp", "context"}


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One row for the event store; the store assigns its position and stream version."""

    event_id: UUID
    user_id: str
    event_type: str
    topic: str
    schema_version: int
    state: str
    body_hash: bytes
    occurred_at: datetime


_PAYLOAD_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f.name for f in dataclasses.fields(cls) if f.name not in _ENVELOPE)
    for kind, cls in events.EVENT_CLASSES.items()
}


def domain_event(command: Command, now: datetime) -> events.InteractionEvent:
    kind: str = command.type  # type: ignore[attr-defined]
    event_cls = events.EVENT_CLASSES[kind]
    fields: dict[str, Any] = {name: getattr(command, name) for name in _PAYLOAD_FIELDS[kind]}
    if event_cls is events.Searched and fields["results"] is None:
        fields["results"] = []
    return event_cls(
        originator_id=command.user_id,  # type: ignore[attr-defined]
        originator_version=0,
        timestamp=command.occurred_at or now,
        context=command.context,
        **fields,
    )


def new_event(command: Command, now: datetime | None = None) -> NewEvent:
    event = domain_event(command, now or datetime.now(UTC))
    stored = events.encode(event)
    return NewEvent(
        event_id=command.event_id or uuid4(),
        user_id=event.originator_id,
        event_type=event.event_type,
        topic=stored.topic,
        schema_version=events.schema_version(event),
        state=stored.state.decode(),
        body_hash=hashlib.sha256(command.fingerprint()).digest(),
        occurred_at=event.timestamp,
    )
