"""Command payloads: what clients may send, validated exactly as the API contract says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_CONTEXT_BYTES = 2048
MAX_BATCH_EVENTS = 1000
# Counts the read models store (model_feedback.rank is an integer column) or sum
# (total watch seconds): past it, an accepted event would stop the projections.
MAX_INT32 = 2**31 - 1
# PostgreSQL text and jsonb cannot hold U+0000: refused here, not failed at the insert
# (where it would also fail every other request committing in the same group).
NO_NUL = r"^[^\x00]*$"
NUL_REFUSED = "text holds a NUL character (U+0000), which cannot be stored"

IDENTIFIER_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
# GET /recommend's `exclude`: up to MAX_EXCLUDE movie ids, comma-separated.
MAX_EXCLUDE = 100
EXCLUDE_PATTERN = rf"^({IDENTIFIER_PATTERN}(,{IDENTIFIER_PATTERN}){{0,{MAX_EXCLUDE - 1}}})?$"

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"),
    Field(description="1-64 characters from [A-Za-z0-9_.:-]", examples=["u42"]),
]


def _not_far_future(value: datetime) -> datetime:
    try:
        value.astimezone(UTC)  # how it is stored; year 1 at +02:00 is before year 1 in UTC
    except OverflowError:
        raise ValueError("occurred_at is out of range once in UTC") from None
    if value - datetime.now(UTC) > MAX_FUTURE_SKEW:
        raise ValueError("occurred_at is more than 5 minutes in the future")
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _small_context(value: dict[str, Any]) -> dict[str, Any]:
    if _holds_nul(value):
        raise ValueError(NUL_REFUSED)
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        raise ValueError("context holds a number outside the 64-bit range") from None
    if len(encoded) > MAX_CONTEXT_BYTES:
        raise ValueError(f"context is larger than {MAX_CONTEXT_BYTES} bytes once encoded")
    return value


def _integral(value: Any) -> Any:
    """3.0 is an integer in JSON Schema 2020-12 (OpenAPI 3.1), so it is taken as 3; the
    strict models refuse every other float, and bools and strings, as before."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Integer fields that also take integral floats (3.0). Their JSON Schema stays an integer
# with minimum and maximum: the bounds come before the validator, so pydantic can still
# write them as JSON Schema.
_INTEGRAL = BeforeValidator(_integral)
WatchedSeconds = Annotated[int, Field(ge=0, le=MAX_INT32), _INTEGRAL]
Rank = Annotated[int, Field(ge=1, le=MAX_INT32), _INTEGRAL]
Year = Annotated[int, Field(ge=1870, le=2100), _INTEGRAL]

OccurredAt = Annotated[AwareDatetime, AfterValidator(_not_far_future)]
Context = Annotated[dict[str, Any], AfterValidator(_small_context)]


_NOT_BODY = {"event_id"}


class Command(BaseModel):
    """Fields every command accepts."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    event_id: UUID | None = Field(
        default=None, description="Client-chosen idempotency key; a retry with it is answered once"
    )
    occurred_at: OccurredAt | None = Field(
        default=None,
        description="RFC 3339 client time, at most 5 minutes ahead; server time if absent",
    )
    context: Context | None = Field(
        default=None,
        description="Device, app version, session id... at most 2 KB, no NUL characters",
    )

    def fingerprint(self) -> bytes:
        """Canonical bytes of what the client said, to tell a retry from a different event."""
        # Field order is fixed by the model class, so the bytes are canonical without sorting.
        return self.__pydantic_serializer__.to_json(self, exclude=_NOT_BODY, exclude_none=True)


class WatchCommand(Command):
    type: Literal["watch"] = "watch"
    user_id: Identifier
    movie_id: Identifier
    progress: float = Field(ge=0.0, le=1.0, description="Fraction of the movie watched")
    watched_seconds: WatchedSeconds | None = None


class SearchCommand(Command):
    type: Literal["search"] = "search"
    user_id: Identifier
    query: str = Field(min_length=1, max_length=256, pattern=NO_NUL)
    results: list[Identifier] | None = Field(default=None, max_length=100)
    clicked_movie_id: Identifier | None = None


class RatingCommand(Command):
    type: Literal["rating"] = "rating"
    user_id: Identifier
    movie_id: Identifier
    rating: float = Field(ge=0.5, le=5.0, multiple_of=0.5)


class FavoriteCommand(Command):
    type: Literal["favorite"] = "favorite"
    user_id: Identifier
    movie_id: Identifier
    action: Literal["add", "remove"]


class FeedbackCommand(Command):
    type: Literal["feedback"] = "feedback"
    user_id: Identifier
    movie_id: Identifier
    recommendation_id: Identifier
    action: Literal["click", "watch", "like", "dislike", "dismiss"]
    rank: Rank | None = None


# Batch items: the same commands, but `type` is required, since it says which one an item
# is (a single endpoint's path says it already). Fields and their order are those of the
# single commands, so an event fingerprints alike sent alone or in a batch.
class WatchItem(WatchCommand):
    type: Literal["watch"]


class SearchItem(SearchCommand):
    type: Literal["search"]


class RatingItem(RatingCommand):
    type: Literal["rating"]


class FavoriteItem(FavoriteCommand):
    type: Literal["favorite"]


class FeedbackItem(FeedbackCommand):
    type: Literal["feedback"]


AnyCommand = Annotated[
    WatchItem | SearchItem | RatingItem | FavoriteItem | FeedbackItem,
    Field(discriminator="type"),
]


class BatchCommand(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    events: list[AnyCommand] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


SINGLE_COMMANDS: dict[str, type[Command]] = {
    "watch": WatchCommand,
    "search": SearchCommand,
    "rating": RatingCommand,
    "favorite": FavoriteCommand,
    "feedback": FeedbackCommand,
}

ADAPTERS: dict[str, TypeAdapter[Any]] = {
    **{name: TypeAdapter(model) for name, model in SINGLE_COMMANDS.items()},
    "batch": TypeAdapter(BatchCommand),
}


class MovieCommand(BaseModel):
    """PUT /api/v1/movies/{movie_id}: a catalog entry (admin)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    title: str = Field(min_length=1, max_length=500, pattern=NO_NUL)
    genres: list[Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]] = (
        Field(default_factory=list, max_length=30)
    )
    year: Year | None = None


ADAPTERS["movie"] = TypeAdapter(MovieCommand)

ADAPTERS["user_id"] = TypeAdapter(Identifier)
