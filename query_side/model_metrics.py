"""Online metrics per model version, read from the recommendations and their outcomes.

The outcomes are folded by projections.outcomes (so a rebuild recomputes them); a
request only counts rows since `since`, through indexes holding the columns it reads.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from query_side.http import BadQuery, answering, query_param
from schema import openapi, responses
from schema.http import JSONResponse, admin_only
from schema.openapi import ApiRoute

DEFAULT_WINDOW = timedelta(hours=24)
# RFC 3339 exactly (pydantic's lax parsing would also take "0.5" as a Unix time).
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)")

METRICS_SQL = """
WITH served AS (
    SELECT model_version, count(*) AS recommendations
    FROM recommendations WHERE created_at >= $1 GROUP BY model_version
), outcomes AS (
    SELECT model_version,
           count(DISTINCT recommendation_id) FILTER (WHERE outcome = 'click') AS clicks,
           count(*) FILTER (WHERE outcome = 'conversion') AS conversions
    FROM recommendation_outcomes WHERE shown_at >= $1 GROUP BY model_version
)
SELECT s.model_version, s.recommendations,
       COALESCE(o.clicks, 0) AS clicks, COALESCE(o.conversions, 0) AS conversions
FROM served AS s LEFT JOIN outcomes AS o USING (model_version)
ORDER BY s.model_version
"""


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


async def model_metrics(conn: asyncpg.Connection, since: datetime) -> list[dict[str, Any]]:
    """Per model version that served since `since`: the SPEC's figures. Outcomes count
    against the recommendation that earned them, so both sides filter on when it was
    shown (an outcome without its recommendation row, erased since, is not counted)."""
    return [
        {
            "model_version": row["model_version"],
            "recommendations": row["recommendations"],
            "clicks": row["clicks"],
            "ctr": _ratio(row["clicks"], row["recommendations"]),
            "conversions": row["conversions"],
            "conversion_rate": _ratio(row["conversions"], row["recommendations"]),
        }
        for row in await conn.fetch(METRICS_SQL, since)
    ]


def since_param(request: Request) -> datetime:
    raw = query_param(request, "since")
    if raw is None:  # absent; an empty one is no time, and is refused
        return datetime.now(UTC) - DEFAULT_WINDOW
    try:
        if RFC3339.fullmatch(raw) is None:
            raise ValueError(raw)
        # fromisoformat takes at most microseconds: finer digits are cut.
        head, dot, tail = raw.partition(".")
        if dot:
            digits = len(tail) - len(tail.lstrip("0123456789"))
            raw = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}"
        return datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery("query", "since", "an RFC 3339 time with its offset") from None


def model_metrics_routes(pool: asyncpg.Pool, admin_token: str | None) -> list[ApiRoute]:
    async def endpoint(request: Request) -> Response:
        since = since_param(request)
        async with pool.acquire() as conn:
            models = await model_metrics(conn, since)
        return JSONResponse(
            responses.ModelMetricsList.model_validate({"since": since, "models": models})
        )

    return [
        ApiRoute(
            "/api/v1/admin/model-metrics",
            admin_only(answering(endpoint), admin_token),
            methods=["GET"],
            doc=openapi.Operation(
                "Online metrics per model version: recommendations, CTR, conversions",
                "admin",
                None,
                openapi.answers({200: responses.ModelMetricsList}, 401, 403, 422, 503),
                (
                    openapi.Param(
                        "since",
                        "query",
                        {"type": "string", "format": "date-time"},
                        "Count recommendations shown from this time on (default: 24 h ago)",
                    ),
                ),
                admin=True,
            ),
        )
    ]
