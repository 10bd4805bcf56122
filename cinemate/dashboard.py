"""GET /dashboard: one self-contained page (inline CSS and JS, nothing from elsewhere)
that reads the service's own API and /metrics. The admin token is asked once and kept
in the browser's session storage; the page never holds it in its HTML."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

PAGE = Path(__file__).parent / "dashboard.html"


def dashboard_route(page: Path = PAGE) -> Route:
    html = page.read_text(encoding="utf-8")

    async def dashboard(request: Request) -> Response:
        # no-store: a page cached from an older service would read its API wrongly.
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return Route("/dashboard", dashboard, methods=["GET"])
