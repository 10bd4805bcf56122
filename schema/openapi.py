"""The OpenAPI document, generated from the same pydantic models that validate and answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schema import commands, responses

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path | query
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    answers: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    admin: bool = False
    body_required: bool = True


USER_ID = Param(
    "user_id", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, required=True
)
_COMMAND_ERRORS: dict[int, type[BaseModel] | None] = {
    400: responses.ErrorBody,
    409: responses.ErrorBody,
    413: responses.ErrorBody,
    415: responses.ErrorBody,
    422: responses.ErrorBody,
    503: responses.ErrorBody,
}


def _command(path: str, summary: str, body: type[BaseModel]) -> Operation:
    return Operation(
        "post",
        path,
        summary,
        "commands",
        body,
        {202: responses.Accepted, 200: responses.Accepted, **_COMMAND_ERRORS},
    )


OPERATIONS: list[Operation] = [
    _command(
        "/api/v1/events/watch",
        "Record that a user watched (part of) a movie",
        commands.WatchCommand,
    ),
    _command("/api/v1/events/search", "Record a search", commands.SearchCommand),
    _command(
        "/api/v1/events/rating", "Record a rating (0.5..5.0, steps of 0.5)", commands.RatingCommand
    ),
    _command("/api/v1/events/favorite", "Add or remove a favorite", commands.FavoriteCommand),
    _command("/api/v1/feedback", "Record a reaction to a recommendation", commands.FeedbackCommand),
    Operation(
        "post",
        "/api/v1/events/batch",
        "Record 1..1000 events, all or nothing",
        "commands",
        commands.BatchCommand,
        {202: responses.BatchAccepted, 200: responses.BatchAccepted, **_COMMAND_ERRORS},
    ),
    Operation(
        "get",
        "/api/v1/users/{user_id}/events",
        "A user's event stream, oldest first",
        "queries",
        None,
        {
            200: responses.UserEvents,
            404: responses.ErrorBody,
            422: responses.ErrorBody,
            503: responses.ErrorBody,
        },
        (
            USER_ID,
            Param(
                "after",
                "query",
                {"type": "integer", "minimum": 0, "maximum": commands.MAX_INT32},
                "Stream version to start after",
            ),
            Param(
                "limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
            ),
        ),
    ),
    Operation(
        "get",
        "/api/v1/features/{user_id}",
        "The user's feature document",
        "queries",
        None,
        {
            200: responses.FeatureDocument,
            404: responses.ErrorBody,
            422: responses.ErrorBody,
            503: responses.ErrorBody,
        },
        (USER_ID,),
    ),
    Operation(
        "post",
        "/api/v1/features/{user_id}/refresh",
        "Recompute the user's features from their stream, store and return them",
        "queries",
        None,
        {
            200: responses.FeatureDocument,
            404: responses.ErrorBody,
            422: responses.ErrorBody,
            503: responses.ErrorBody,
        },
        (USER_ID,),
    ),
    Operation(
        "get",
        "/api/v1/popular",
        "Trending movies (time-decayed)",
        "queries",
        None,
        {200: responses.Popular, 422: responses.ErrorBody},
        (
            Param("genre", "query", {"type": "string"}, "Only movies of this genre"),
            Param(
                "limit", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
            ),
        ),
    ),
    Operation(
        "get",
        "/api/v1/admin/projections",
        "Each projection's position, lag and state",
        "admin",
        None,
        {200: responses.Projections, 401: responses.ErrorBody, 403: responses.ErrorBody},
        admin=True,
    ),
    Operation(
        "post",
        "/api/v1/admin/projections/{name}/rebuild",
        "Rebuild a read model by replay beside the live one, then swap it in",
        "admin",
        None,
        {
            202: responses.RebuildStarted,
            401: responses.ErrorBody,
            403: responses.ErrorBody,
            404: responses.ErrorBody,
            409: responses.ErrorBody,
            503: responses.ErrorBody,
        },
        (
            Param(
                "name",
                "path",
                {
                    "type": "string",
                    "enum": ["user_features", "item_stats", "audit", "model_feedback"],
                },
                required=True,
            ),
        ),
        admin=True,
    ),
    Operation(
        "put",
        "/api/v1/movies/{movie_id}",
        "Create or replace a catalog entry",
        "admin",
        commands.MovieCommand,
        {
            200: None,
            400: responses.ErrorBody,
            401: responses.ErrorBody,
            403: responses.ErrorBody,
            413: responses.ErrorBody,
            415: responses.ErrorBody,
            422: responses.ErrorBody,
            503: responses.ErrorBody,
        },
        (
            Param(
                "movie_id",
                "path",
                {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                required=True,
            ),
        ),
        admin=True,
    ),
    Operation(
        "get",
        "/api/v1/recommend/{user_id}",
        "What to show the user next, scored from their current history",
        "queries",
        None,
        {200: responses.Recommendation, 422: responses.ErrorBody, 503: responses.ErrorBody},
        (
            USER_ID,
            Param(
                "limit", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
            ),
            Param("genre", "query", {"type": "string"}, "Only movies of this genre"),
            Param(
                "exclude",
                "query",
                {"type": "string", "pattern": commands.EXCLUDE_PATTERN},
                f"Up to {commands.MAX_EXCLUDE} comma-separated movie ids to leave out",
            ),
        ),
    ),
    Operation(
        "get",
        "/api/v1/movies/{movie_id}/similar",
        "Similar movies (item to item)",
        "queries",
        None,
        {
            200: responses.SimilarMovies,
            404: responses.ErrorBody,
            422: responses.ErrorBody,
            503: responses.ErrorBody,
        },
        (
            Param(
                "movie_id",
                "path",
                {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                required=True,
            ),
            Param(
                "limit", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
            ),
        ),
    ),
    Operation(
        "get", "/model/info", "The model being served", "model", None, {200: responses.ModelInfo}
    ),
    Operation(
        "post",
        "/model/reload",
        "Load a model and swap it in; a broken one is refused",
        "admin",
        responses.ReloadRequest,
        {
            200: responses.ModelInfo,
            400: responses.ErrorBody,
            401: responses.ErrorBody,
            403: responses.ErrorBody,
            404: responses.ErrorBody,
            422: responses.ErrorBody,
        },
        admin=True,
        body_required=False,  # empty: MODEL_PATH or the newest artifact
    ),
    Operation(
        "delete",
        "/api/v1/users/{user_id}",
        "Forget a user: events, read-model rows and cache entries, in one operation",
        "admin",
        None,
        {
            200: None,
            401: responses.ErrorBody,
            403: responses.ErrorBody,
            422: responses.ErrorBody,
            503: responses.ErrorBody,
        },
        (USER_ID,),
        admin=True,
    ),
    Operation(
        "get",
        "/api/v1/health",
        "Health of every component",
        "health",
        None,
        {200: responses.Health, 503: responses.Health},
    ),
    Operation(
        "get", "/api/v1/health/live", "200 while the process runs", "health", None, {200: None}
    ),
    Operation(
        "get",
        "/api/v1/health/ready",
        "200 when the service can serve",
        "health",
        None,
        {200: responses.Health, 503: responses.Health},
    ),
]


def _operation_id(op: Operation) -> str:
    words = op.path.strip("/").replace("{", "").replace("}", "").split("/")
    return "_".join([op.method, *words])


def build(operations: list[Operation] | None = None, version: str = "0.1.0") -> dict[str, Any]:
    operations = OPERATIONS if operations is None else operations
    models: set[type[BaseModel]] = set()
    for op in operations:
        if op.body is not None:
            models.add(op.body)
        models.update(m for m in op.answers.values() if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema([(m, "validation") for m in ordered], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": _operation_id(op),
            "responses": {
                str(status): (
                    {
                        "description": model.__name__ if model else "OK",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": REF.format(model=model.__name__)}
                            }
                        },
                    }
                    if model is not None
                    else {"description": "OK"}
                )
                for status, model in op.answers.items()
            },
        }
        if op.body is not None:
            entry["requestBody"] = {
                "required": op.body_required,
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}
                },
            }
        if op.params:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "schema": p.schema,
                    "description": p.description,
                }
                for p in op.params
            ]
        if op.admin:
            entry["security"] = [{"bearerAuth": []}]
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Cinemate interaction & recommendation service",
            "version": version,
            "description": "Event-sourced interactions in, real-time recommendations out.",
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
