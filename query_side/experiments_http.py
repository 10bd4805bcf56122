"""PUT / GET / DELETE /api/v1/admin/experiment: start, show and end an A/B experiment."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from query_side.experiments import ExperimentHolder, describe
from query_side.http import answering
from query_side.model_serving import ModelRefused
from schema import openapi, responses
from schema.http import JSONResponse, admin_only, error_response
from schema.openapi import ApiRoute

NONE_RUNS = "no experiment is running"


def experiment_routes(
    pool: asyncpg.Pool,
    experiments: ExperimentHolder,
    models_dir: Path,
    model_path: Path | None,
    admin_token: str | None,
) -> list[ApiRoute]:
    async def start(request: Request) -> Response:
        try:
            given = responses.ExperimentRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            if any(e["type"] == "json_invalid" for e in errors):
                return error_response(400, "malformed_json", 'body must be {"variants": [...]}')
            detail = [
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
            ]
            return error_response(422, "validation_error", detail)
        try:
            await experiments.start(
                pool, [(v.model, v.share) for v in given.variants], models_dir, model_path
            )
        except ModelRefused as exc:
            return error_response(
                exc.status_code, "model_refused", f"{exc.reason}; the experiment is not started"
            )
        return await show(request)

    async def show(request: Request) -> Response:
        async with pool.acquire() as conn:
            running = await describe(conn)
        if running is None:
            return error_response(404, "not_found", NONE_RUNS)
        return JSONResponse(responses.Experiment.model_validate(running))

    async def end(request: Request) -> Response:
        async with pool.acquire() as conn:
            running = await describe(conn)  # its figures as it ends
        if await experiments.end(pool) is None or running is None:
            return error_response(404, "not_found", NONE_RUNS)
        return JSONResponse(responses.Experiment.model_validate(running))

    async def endpoint(request: Request) -> Response:
        handlers = {"PUT": start, "GET": show, "DELETE": end}
        return await handlers[request.method](request)

    put = openapi.Operation(
        "Start an A/B experiment between models (ending the one running); a variant whose"
        " model is refused refuses it all, and nothing changes",
        "admin",
        responses.ExperimentRequest,
        openapi.answers({200: responses.Experiment}, 400, 401, 403, 404, 422, 503),
        admin=True,
    )
    get = openapi.Operation(
        "The running experiment: users and recommendations per variant since it started",
        "admin",
        None,
        openapi.answers({200: responses.Experiment}, 401, 403, 404, 503),
        admin=True,
    )
    delete = openapi.Operation(
        "End the running experiment (everyone back to the current model); its last figures",
        "admin",
        None,
        openapi.answers({200: responses.Experiment}, 401, 403, 404, 503),
        admin=True,
    )
    return [
        ApiRoute(
            "/api/v1/admin/experiment",
            admin_only(answering(endpoint), admin_token),
            methods=["PUT", "GET", "DELETE"],
            doc={"PUT": put, "GET": get, "DELETE": delete},
        )
    ]
