"""The OpenAPI document describes exactly the routes the application serves."""

from __future__ import annotations

from starlette.routing import Route

from cinemate.app import Services, build_app
from schema import openapi

UNDOCUMENTED = {"/openapi.json", "/docs", "/metrics"}


def test_every_route_is_documented_and_nothing_else(services: Services) -> None:
    app = build_app(services)
    served = {
        (method.lower(), route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path not in UNDOCUMENTED
        for method in (route.methods or set()) - {"HEAD"}
    }
    documented = {
        (method, path) for path, ops in openapi.build()["paths"].items() for method in ops
    }
    assert served == documented
