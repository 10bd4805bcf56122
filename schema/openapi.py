"""The OpenAPI document, generated from the same pydantic models that validate and answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from schema import responses

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
    """What the document says of one route's method (the route gives method and path)."""

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


# What any command endpoint may answer besides its success.
COMMAND_ERRORS = (400, 409, 413, 415, 422, 503)


def answers(
    success: dict[int, type[BaseModel] | None], *errors: int
) -> dict[int, type[BaseModel] | None]:
    """An operation's answers: its successes, and error statuses that all carry the
    error envelope (`responses.ErrorBody`)."""
    return {**success, **dict.fromkeys(errors, responses.ErrorBody)}


def command(summary: str, body: type[BaseModel]) -> Operation:
    """A command endpoint: 202 accepted (200 duplicate) with the store's answer."""
    return Operation(
        summary,
        "commands",
        body,
        answers({202: responses.Accepted, 200: responses.Accepted}, *COMMAND_ERRORS),
    )


class ApiRoute(Route):
    """A route that carries its OpenAPI operation, declared where the route is: the
    document is built from the routes themselves, so it cannot drift from them. A route
    of several methods says each one's operation (`doc` by method); one route per path
    keeps the router's 405 `Allow` header whole."""

    def __init__(
        self,
        path: str,
        endpoint: Any,
        *,
        methods: list[str],
        doc: Operation | Mapping[str, Operation],
    ) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.doc = doc

    def operation(self, method: str) -> Operation:
        return self.doc if isinstance(self.doc, Operation) else self.doc[method]


def _operation_id(method: str, path: str) -> str:
    words = path.strip("/").replace("{", "").replace("}", "").split("/")
    return "_".join([method, *words])


def operations_of(routes: Sequence[BaseRoute]) -> list[tuple[str, str, Operation]]:
    """(method, path, operation) of every documented route, in route order."""
    return [
        (method.lower(), route.path, route.operation(method))
        for route in routes
        if isinstance(route, ApiRoute)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]


def build(routes: Sequence[BaseRoute], version: str = "0.1.0") -> dict[str, Any]:
    operations = operations_of(routes)
    models: set[type[BaseModel]] = set()
    for _, _, op in operations:
        if op.body is not None:
            models.add(op.body)
        models.update(m for m in op.answers.values() if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema([(m, "validation") for m in ordered], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": _operation_id(method, path),
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
        paths.setdefault(path, {})[method] = entry
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
