"""Answer payloads. They document the API (OpenAPI) and are the single source of its shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


class WatchSummary(BaseModel):
    count: int
    total_seconds: int
    mean_progress: float
    completed_count: int = Field(description="Watch events with progress >= 0.9")


class RatingSummary(BaseModel):
    count: int
    mean: float | None


class GenreWeight(BaseModel):
    genre: str
    weight: float


class FeatureDocument(BaseModel):
    """GET /api/v1/features/{user_id}; also the value on the processed_features topic."""

    user_id: str
    stream_version: int
    position: int
    event_counts: dict[str, int]
    watch: WatchSummary
    ratings: RatingSummary
    favorites: list[str] = Field(description="Current favorites, newest first")
    recent_movies: list[str] = Field(description="Last 50 movies interacted with, newest first")
    top_genres: list[GenreWeight]
    recent_searches: list[str] = Field(description="Last 10 searches, newest first")
    first_event_at: str | None
    last_event_at: str | None
    updated_at: str


class PopularItem(BaseModel):
    movie_id: str
    score: float = Field(description="Log of the time-decayed interaction weight (comparable)")
    title: str | None
    genres: list[str]


class Popular(BaseModel):
    genre: str | None
    items: list[PopularItem]


class ProjectionState(BaseModel):
    name: str
    position: int
    lag_events: int | None
    lag_seconds: float | None
    state: Literal["running", "rebuilding", "stopped"]


class Projections(BaseModel):
    projections: list[ProjectionState]


class RebuildStarted(BaseModel):
    name: str
    state: Literal["rebuilding"]


class RecommendedItem(BaseModel):
    movie_id: str
    score: float
    title: str | None
    genres: list[str]


class PersonalItem(RecommendedItem):
    because: list[str] = Field(
        default_factory=list,
        max_length=3,
        description="Only with explain=true, and only in personalized answers (a cold"
        " start is not read from the history, so its items carry no `because`): the at"
        " most 3 movies of the viewer's history contributing most to this item's score,"
        " the largest first (only movies adding to it)",
    )


class Recommendation(BaseModel):
    user_id: str
    recommendation_id: str = Field(description="Send it back with feedback")
    model_version: str = Field(
        description="The model that served: during an experiment, the viewer's variant"
    )
    strategy: Literal["personalized", "cold_start"]
    items: list[PersonalItem]
    generated_at: str


class SimilarMovies(BaseModel):
    movie_id: str
    model_version: str
    strategy: Literal["item_to_item", "genres_by_trend"] = Field(
        description="item_to_item: the trained model's item similarities; genres_by_trend:"
        " no model knows the movie, so movies sharing its catalog genres, trending first"
    )
    items: list[RecommendedItem]


class ModelInfo(BaseModel):
    version: str
    format: str | None
    path: str | None
    sha256: str | None
    trained_at: str | None
    items: int
    metrics: dict[str, Any]
    loaded_at: str | None


# A model artifact's file name ends in one of the formats' suffixes (no NUL: no file
# system takes one). POST /model/reload refuses any other path with 422, as the schema says.
ARTIFACT_PATH_PATTERN = r"^[^\x00]*[^/\x00]\.(npz|pkl|onnx)$"


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # POST /model/reload validates with it

    path: str | None = Field(
        default=None,
        pattern=ARTIFACT_PATH_PATTERN,
        description="Artifact to load (.npz, .pkl or .onnx), in the models dir (a relative"
        " path is taken from there) or at MODEL_PATH; a .pkl only if its SHA-256 is pinned"
        " or recorded by training. Absent or null: MODEL_PATH, else the newest artifact"
        " in the models dir that loads",
    )


class ModelMetrics(BaseModel):
    model_version: str
    recommendations: int = Field(description="Recommendations served since `since`")
    clicks: int = Field(description="Of those, the ones with at least one click")
    ctr: float = Field(description="clicks / recommendations")
    conversions: int = Field(
        description="Shown movies the viewer then watched (progress >= 0.5), rated >= 4 or"
        " favorited within 24 h, once per (recommendation, movie)"
    )
    conversion_rate: float = Field(description="conversions / recommendations")


class ModelMetricsList(BaseModel):
    since: datetime
    models: list[ModelMetrics]


# A variant names an artifact (as /model/reload's `path` does) or a model version, whose
# artifact is looked up in the models dir.
EXPERIMENT_MODEL_PATTERN = r"^(?:[^\x00]*[^/\x00]\.(npz|pkl|onnx)|[A-Za-z0-9_.:-]{1,128})$"
# Shares are floats: they sum to 1 within this.
SHARE_TOLERANCE = 1e-6


class ExperimentVariantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str = Field(
        pattern=EXPERIMENT_MODEL_PATTERN,
        description="An artifact (.npz, .pkl or .onnx) in the models dir (a relative path is"
        " taken from there) or at MODEL_PATH, as for /model/reload; or the model version of"
        " an artifact in the models dir",
    )
    share: float = Field(gt=0, le=1, description="The fraction of users this variant serves")


class ExperimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    variants: list[ExperimentVariantRequest] = Field(
        min_length=2,
        max_length=10,
        description="The models to compare; their shares sum to 1 and their model versions differ",
    )

    @field_validator("variants")
    @classmethod
    def _shares_sum_to_one(
        cls, variants: list[ExperimentVariantRequest]
    ) -> list[ExperimentVariantRequest]:
        total = sum(v.share for v in variants)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"the shares sum to {total:.6g}, not 1")
        return variants


class ExperimentVariant(BaseModel):
    model_version: str
    share: float
    users: int = Field(description="Distinct users this variant recommended to since started_at")
    recommendations: int = Field(description="Recommendations it served since started_at")


class Experiment(BaseModel):
    id: str = Field(description="Users are assigned by a hash of (id, user id)")
    started_at: datetime
    variants: list[ExperimentVariant]
