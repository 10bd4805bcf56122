"""Answer payloads. They document the API (OpenAPI) and are the single source of its shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field


class Accepted(BaseModel):
    event_id: UUID
    position: int = Field(description="Global position in the event store")
    stream_version: int = Field(description="Version of the event in the user's stream")
    status: Literal["accepted", "duplicate"]


class BatchAccepted(BaseModel):
    results: list[Accepted] = Field(description="One result per submitted event, in order")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    error: str = Field(examples=["validation_error"])
    detail: list[ErrorItem] | str


class StoredEventOut(BaseModel):
    event_id: UUID
    type: str
    schema_version: int
    stream_version: int
    position: int
    occurred_at: datetime
    recorded_at: datetime
    payload: dict[str, Any]


class UserEvents(BaseModel):
    user_id: str
    events: list[StoredEventOut]
    next_after: int | None = Field(description="Pass as `after` for the next page; null at the end")


class ComponentHealth(BaseModel):
    status: Literal["ok", "degraded", "down", "disabled"]
    detail: dict[str, Any] = Field(default_factory=dict)


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"]
    components: dict[str, ComponentHealth]
