"""The OpenAPI document describes exactly the routes the application serves."""

from __future__ import annotations

import re

from starlette.routing import Route

from cinemate.app import Services, api_document, build_app

UNDOCUMENTED = {"/openapi.json", "/docs", "/metrics", "/dashboard"}  # pages and scrapes


def test_every_route_is_documented_and_nothing_else(services: Services) -> None:
    app = build_app(services)
    served = {
        (method.lower(), route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path not in UNDOCUMENTED
        for method in (route.methods or set()) - {"HEAD"}
    }
    documented = {(method, path) for path, ops in api_document()["paths"].items() for method in ops}
    assert served == documented


def test_the_schema_says_what_the_server_enforces() -> None:
    """Findings of Schemathesis: each a place where schema and server disagreed."""
    document = api_document()
    paths, schemas = document["paths"], document["components"]["schemas"]
    # /model/reload takes an empty body as well as {"path": ...}.
    assert paths["/model/reload"]["post"]["requestBody"]["required"] is False
    assert all(
        op["requestBody"]["required"] is True
        for path, ops in paths.items()
        for op in ops.values()
        if "requestBody" in op and path != "/model/reload"
    )
    # `after` is a stream version: capped like one.
    stream = {p["name"]: p for p in paths["/api/v1/users/{user_id}/events"]["get"]["parameters"]}
    assert stream["after"]["schema"]["maximum"] == 2**31 - 1
    # A batch item's `type` is what tells its kind: required there (and only there).
    batch = schemas["BatchCommand"]["properties"]["events"]["items"]
    for ref in batch["discriminator"]["mapping"].values():
        item = schemas[ref.rsplit("/", 1)[1]]
        assert "type" in item["required"], item
    assert "type" not in schemas["WatchCommand"].get("required", [])
    # `exclude`: up to 100 comma-separated movie ids.
    recommend = {p["name"]: p for p in paths["/api/v1/recommend/{user_id}"]["get"]["parameters"]}
    pattern = re.compile(recommend["exclude"]["schema"]["pattern"])
    assert pattern.fullmatch("m1,m2.x,a:b-c_d")
    assert pattern.fullmatch(",".join(f"m{i}" for i in range(100)))
    for wrong in ("m1,", "m 1", ",m1", "m1,,m2", ",".join(f"m{i}" for i in range(101))):
        assert not pattern.fullmatch(wrong), wrong
