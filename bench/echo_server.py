"""The baseline for bench/ingest: starlette + pydantic + uvicorn validating the same watch
body and answering 202, and nothing else (no database, none of the service's own work).

SPEC.md's ingest target is a ratio to this: what the same libraries can answer on this
machine in the same run.
"""

from __future__ import annotations

import argparse
import uuid

import uvloop
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cinemate.server import server
from schema.commands import WatchCommand


async def echo_watch(request: Request) -> Response:
    try:
        command = WatchCommand.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"error": "validation_error", "detail": exc.errors()}, 422)
    answer = {
        "event_id": str(command.event_id or uuid.uuid4()),
        "position": 0,
        "stream_version": 0,
        "status": "accepted",
    }
    return JSONResponse(answer, 202)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(routes=[Route("/api/v1/events/watch", echo_watch, methods=["POST"])])
    uvloop.run(server(app, "127.0.0.1", args.port, guard=False).serve())


if __name__ == "__main__":
    main()
