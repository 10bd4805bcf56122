"""Turn a validated command into the domain event to append, encoded for the store."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from event_store.append import NewEvent, encode
from event_store.ids import new_event_id
from schema import events
from schema.commands import Command

_ENVELOPE = {"originator_id", "originator_version", "timestamp", "context"}


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
    return encode(event, command.event_id or new_event_id(), command.fingerprint())
