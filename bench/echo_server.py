"""The baseline for bench/ingest: the same server stack, validating and encoding each
event exactly as the service does, then answering without touching a database."""

from __future__ import annotations

import argparse

import uvloop
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cinemate.middleware import RequestContext
from cinemate.server import server
from command_side.new_events import new_event
from command_side.request_body import BadRequest, parse, read_json_body
from schema.commands import ADAPTERS
from schema.http import JSONResponse, error_response


async def echo_watch(request: Request) -> Response:
    try:
        command = parse(ADAPTERS["watch"], await read_json_body(request))
    except BadRequest as exc:
        return error_response(exc.status_code, exc.error, exc.detail)
    event = new_event(command)
    answer = {
        "event_id": str(event.event_id),
        "position": 0,
        "stream_version": 0,
        "status": "accepted",
    }
    return JSONResponse(answer, 202)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(
        routes=[Route("/api/v1/events/watch", echo_watch, methods=["POST"])],
        middleware=[Middleware(RequestContext)],
    )
    uvloop.run(server(app, "127.0.0.1", args.port).serve())


if __name__ == "__main__":
    main()
