"""/openapi.json and /docs: Swagger UI 5 (reads OpenAPI 3.1) from a local copy, so the
docs work without internet. scripts/setup.sh puts the pinned swagger-ui-dist files into
cinemate/static/swagger-ui (scripts/docs-assets.sh); without them /docs says how to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from schema.http import JSONResponse

ASSETS = Path(__file__).parent / "static" / "swagger-ui"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cinemate API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/docs/static/favicon-32x32.png">
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", deepLinking: true});
</script>
</body></html>"""

_MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cinemate API</title></head>
<body><p>The Swagger UI files are not installed: run <code>scripts/setup.sh</code>
(or <code>scripts/docs-assets.sh</code>). The API document itself is at
<a href="/openapi.json">/openapi.json</a>.</p></body></html>"""


def docs_routes(document: dict[str, Any], assets: Path = ASSETS) -> list[BaseRoute]:
    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        if not (assets / "swagger-ui-bundle.js").is_file():
            return HTMLResponse(_MISSING, 503)
        return HTMLResponse(_PAGE)

    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=assets, check_dir=False)),
    ]
